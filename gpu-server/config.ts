/**
 * The training server's configuration: flags and SPLITFROZEN_* environment variables read in one place into one
 * typed object (a flag wins over its variable). Every bad or missing value is refused with its name and the fix, all
 * of them at once. S3 credentials come from SPLITFROZEN_S3_ACCESS_KEY_ID and _SECRET_ACCESS_KEY, or when neither is set,
 * from the AWS SDK's default credential chain.
 */
import { parseArgs } from 'node:util';
import { suggest } from '../core/json/suggest.ts';
import type { S3Config } from '../core/storage/s3.ts';
import { BACKENDS, type BackendName } from './backends/tfjs/runtime.ts';

export interface ServerConfig {
  host: string;
  port: number;
  operatorToken: string;
  /** Shared with every device worker (their ROUND_SECRET is derived from it). */
  roundSecret: string;
  s3: S3Config;
  backend: BackendName | 'auto';
  log?: (message: string) => void;
  schedule?: 'pipelined' | 'stop-and-wait';
  /** Seconds between checkpoints within a round (default 30; 0: after every batch). */
  checkpointSeconds?: number;
  /** Threads of the WASM backend (default: every core). */
  wasmThreads?: number;
  /** Threads of onnxruntime's kernels under ort-cpu (default: every core). */
  ortThreads?: number;
  /** Folders run specs may name files in; default: the working directory. */
  dataDirs?: string[];
}

export class ConfigError extends Error {}

export const SERVER_USAGE = `usage: npm run server -- [--host H] [--port P] [--backend auto|${BACKENDS.join('|')}] [--wasm-threads N] [--ort-threads N] [--checkpoint-seconds S] [--schedule pipelined|stop-and-wait]
Each flag may be given as its variable instead (SPLITFROZEN_HOST, SPLITFROZEN_PORT, SPLITFROZEN_BACKEND, ...); secrets only as variables:
  SPLITFROZEN_OPERATOR_TOKEN        the bearer token of the HTTP API, the dashboard and the CLI
  SPLITFROZEN_ROUND_SECRET          the master round secret; devices' ROUND_SECRETs derive from it (npm run cli -- device-secret)
  SPLITFROZEN_S3_BUCKET, SPLITFROZEN_S3_ENDPOINT (unset for AWS S3), SPLITFROZEN_S3_REGION (else AWS_REGION, AWS_DEFAULT_REGION)
  SPLITFROZEN_S3_ACCESS_KEY_ID, SPLITFROZEN_S3_SECRET_ACCESS_KEY, SPLITFROZEN_S3_SESSION_TOKEN: a key for the bucket; with
                                    neither of the first two, the AWS SDK's default chain (AWS_* variables, AWS_PROFILE, roles)
  SPLITFROZEN_DATA_DIRS             ':'-separated folders run specs may name files in (default: the working folder)`;

const FLAGS = {
  host: { type: 'string' },
  port: { type: 'string' },
  backend: { type: 'string' },
  'wasm-threads': { type: 'string' },
  'ort-threads': { type: 'string' },
  'checkpoint-seconds': { type: 'string' },
  schedule: { type: 'string' },
} as const;

/** Every SPLITFROZEN_* variable the server reads, and the CLI's (an operator's shell may hold both). */
const KNOWN_VARIABLES = [
  ...Object.keys(FLAGS).map((f) => `SPLITFROZEN_${f.toUpperCase().replace(/-/g, '_')}`),
  ...['OPERATOR_TOKEN', 'ROUND_SECRET', 'DATA_DIRS', 'URL', 'DEBUG'].map((n) => `SPLITFROZEN_${n}`),
  ...['BUCKET', 'ENDPOINT', 'REGION', 'ACCESS_KEY_ID', 'SECRET_ACCESS_KEY', 'SESSION_TOKEN'].map((n) => `SPLITFROZEN_S3_${n}`),
];

/** The known variable meant, compared without the prefix all share (else every name is near every other). */
function unknownVariableHint(name: string): string {
  const strip = (n: string) => n.slice('SPLITFROZEN_'.length);
  const near = suggest(strip(name), KNOWN_VARIABLES.map(strip));
  return near ? `did you mean 'SPLITFROZEN_${near}'?` : `the settings are ${KNOWN_VARIABLES.join(', ')}`;
}

/** The server's settings from command-line flags and the environment. */
export function serverConfig(argv: string[], env: Record<string, string | undefined>): ServerConfig {
  const problems: string[] = [];
  const fail = (message: string): undefined => void problems.push(message);
  let flags: Partial<Record<keyof typeof FLAGS, string>>;
  try {
    flags = parseArgs({ args: argv, options: FLAGS, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new ConfigError(`${(e as Error).message}\n\n${SERVER_USAGE}`);
  }
  // A value and what to call it in an error: the flag when given, else its variable.
  const setting = (flag: keyof typeof FLAGS) => {
    const name = `SPLITFROZEN_${flag.toUpperCase().replace(/-/g, '_')}`;
    const value = flags[flag] ?? env[name];
    return { value: value === '' ? undefined : value, name: `${name} (--${flag})` };
  };
  const secret = (name: string, hint: string) => env[name] || (fail(`${name} is not set: ${hint}`) ?? '');
  const count = (flag: keyof typeof FLAGS, rule: string, ok: (n: number) => boolean) => {
    const { value, name } = setting(flag);
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!/^\d+(\.\d+)?$/.test(value) || !ok(n)) fail(`${name} is ${JSON.stringify(value)}: set it to ${rule}`);
    return n;
  };
  const oneOf = <T extends string>(flag: keyof typeof FLAGS, allowed: readonly T[]) => {
    const { value, name } = setting(flag);
    if (value !== undefined && !allowed.includes(value as T)) fail(`${name} is ${JSON.stringify(value)}: use ${allowed.join(', ')}`);
    return value as T | undefined;
  };
  if (env.SPLITFROZEN_TOKEN !== undefined && env.SPLITFROZEN_OPERATOR_TOKEN === undefined)
    fail('SPLITFROZEN_TOKEN is an old name: set SPLITFROZEN_OPERATOR_TOKEN instead');
  // A misspelt variable would leave its setting at the default without a word.
  for (const name of Object.keys(env).filter((n) => n.startsWith('SPLITFROZEN_') && !KNOWN_VARIABLES.includes(n) && n !== 'SPLITFROZEN_TOKEN'))
    fail(`${name} is not a setting: ${unknownVariableHint(name)}`);
  const endpoint = env.SPLITFROZEN_S3_ENDPOINT || undefined;
  if (endpoint && !/^https?:\/\/[^/]+/.test(endpoint))
    fail(`SPLITFROZEN_S3_ENDPOINT is ${JSON.stringify(endpoint)}: set it to the storage's http(s) URL, or leave it unset for AWS S3`);
  const [keyId, keySecret] = [env.SPLITFROZEN_S3_ACCESS_KEY_ID || undefined, env.SPLITFROZEN_S3_SECRET_ACCESS_KEY || undefined];
  if (!keyId !== !keySecret)
    fail(
      `${keyId ? 'SPLITFROZEN_S3_SECRET_ACCESS_KEY' : 'SPLITFROZEN_S3_ACCESS_KEY_ID'} is not set, but ${keyId ? 'SPLITFROZEN_S3_ACCESS_KEY_ID' : 'SPLITFROZEN_S3_SECRET_ACCESS_KEY'} is: set both, or neither to use the AWS SDK's credential chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, an instance role)`,
    );
  const config: ServerConfig = {
    host: setting('host').value ?? '127.0.0.1',
    port: count('port', 'a port number, 0 to 65535 (0: any free port)', (n) => Number.isInteger(n) && n <= 65535) ?? 8080,
    operatorToken: secret('SPLITFROZEN_OPERATOR_TOKEN', 'choose a secret; the CLI and the dashboard send it'),
    roundSecret: secret('SPLITFROZEN_ROUND_SECRET', "the master round secret; each device's ROUND_SECRET is derived from it (npm run cli -- device-secret)"),
    s3: {
      bucket: secret('SPLITFROZEN_S3_BUCKET', 'the bucket for activations, checkpoints and adapters'),
      endpoint,
      region:
        env.SPLITFROZEN_S3_REGION ||
        (endpoint?.includes('r2.cloudflarestorage.com') ? 'auto' : undefined) ||
        env.AWS_REGION ||
        env.AWS_DEFAULT_REGION ||
        'us-east-1',
      ...(keyId && keySecret ? { accessKeyId: keyId, secretAccessKey: keySecret, sessionToken: env.SPLITFROZEN_S3_SESSION_TOKEN || undefined } : {}),
    },
    backend: oneOf('backend', ['auto', ...BACKENDS]) ?? 'auto',
    checkpointSeconds: count('checkpoint-seconds', 'a number of seconds between checkpoints within a round, 0 for after every batch', () => true),
    wasmThreads: count('wasm-threads', 'a number of threads for the WASM backend, 1 to 64', (n) => Number.isInteger(n) && n >= 1 && n <= 64),
    ortThreads: count('ort-threads', "a number of threads for onnxruntime's kernels (ort-cpu), 1 to 1024", (n) => Number.isInteger(n) && n >= 1 && n <= 1024),
    schedule: oneOf('schedule', ['pipelined', 'stop-and-wait']),
    dataDirs: env.SPLITFROZEN_DATA_DIRS ? env.SPLITFROZEN_DATA_DIRS.split(':').filter(Boolean) : undefined,
  };
  if (problems.length) throw new ConfigError(problems.length === 1 ? problems[0]! : `${problems.length} settings to fix:\n  ${problems.join('\n  ')}`);
  return config;
}
