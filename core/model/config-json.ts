/** A model folder's `config.json`: its errors name the file, and its text must be one JSON object. */
export class ConfigError extends Error {
  constructor(file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'ConfigError';
  }
}

/** A `config.json`'s text as a JSON object; `file` names the file in errors. */
export function parseJsonObject(text: string, file: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(file, `not valid JSON (${(e as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(file, 'not a JSON object');
  return raw as Record<string, unknown>;
}
