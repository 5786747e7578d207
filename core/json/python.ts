/**
 * JSON as Python's `json.dumps(value, indent=2, sort_keys=True)` writes it, which is how transformers writes
 * config.json and the weights index: keys sorted, non-ASCII escaped, and the numbers Python holds as floats written as
 * floats (`500000.0`, `1e-05`), so that Python reads them back as floats. `floats`: the dotted key paths of those.
 */
export function pythonJson(value: unknown, floats: ReadonlySet<string> = new Set()): string {
  const write = (v: unknown, path: string, indent: string): string => {
    if (v === null || typeof v === 'boolean') return JSON.stringify(v);
    if (typeof v === 'number') return floats.has(path) ? pythonFloat(v) : JSON.stringify(v);
    if (typeof v === 'string') return asciiString(v);
    const inner = indent + '  ';
    if (Array.isArray(v)) return v.length === 0 ? '[]' : `[\n${v.map((x) => inner + write(x, path, inner)).join(',\n')}\n${indent}]`;
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort();
    if (keys.length === 0) return '{}';
    return `{\n${keys.map((k) => `${inner}${asciiString(k)}: ${write(o[k], path ? `${path}.${k}` : k, inner)}`).join(',\n')}\n${indent}}`;
  };
  return write(value, '', '');
}

/** A number as Python's repr of a float: the shortest digits that read back, `.0` on whole numbers, `1e-05` below 1e-4. */
export function pythonFloat(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : '-Infinity';
  const [digits, exponent] = x.toExponential().split('e') as [string, string];
  const e = Number(exponent);
  if (x !== 0 && (e < -4 || e >= 16)) return `${digits}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
  const fixed = String(x);
  return fixed.includes('.') ? fixed : `${fixed}.0`;
}

function asciiString(s: string): string {
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
