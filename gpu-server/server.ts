/** The training server as a process: storage, TensorFlow.js backend, the run manager and the HTTP API. */
import { serve } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { S3Store, type S3Config } from '../core/storage/s3.ts';
import { createApp } from './api/app.ts';
import { RunManager } from './runs/manager.ts';
import { getThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { BACKENDS, initBackend, type BackendName } from './tf/backend.ts';

export interface ServerConfig {
  host: string;
  port: number;
  operatorToken: string;
  /** Shared with every device worker (their ROUND_SECRET). */
  roundSecret: string;
  s3: S3Config;
  backend: BackendName | 'auto';
  log?: (message: string) => void;
  schedule?: 'pipelined' | 'stop-and-wait';
  /** See ManagerOptions.checkpointSeconds. */
  checkpointSeconds?: number;
  /** Threads of the WASM backend (default: every core). */
  wasmThreads?: number;
  /** Folders run specs may name files in (SPLITFROZEN_DATA_DIRS, ':'-separated); default: the working directory. */
  dataDirs?: string[];
}

export interface RunningServer {
  url: string;
  manager: RunManager;
  /** The TensorFlow.js backend in use, and why the ones before it were skipped, in one line. */
  backend: string;
  close(): Promise<void>;
}

export class ConfigError extends Error {}

/** Settings from the environment; each missing one is named with how to set it. */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const need = (name: string, hint: string) => {
    const v = env[name];
    if (!v) throw new ConfigError(`${name} is not set: ${hint}`);
    return v;
  };
  const number = (name: string, hint: string) => {
    const v = env[name];
    if (v === undefined || v === '') return undefined;
    if (!/^\d+(\.\d+)?$/.test(v)) throw new ConfigError(`${name} is ${JSON.stringify(v)}: set it to a number (${hint})`);
    return Number(v);
  };
  return {
    host: env.SPLITFROZEN_HOST ?? '127.0.0.1',
    port: Number(env.SPLITFROZEN_PORT ?? 8080),
    operatorToken: need('SPLITFROZEN_OPERATOR_TOKEN', 'choose a secret; the CLI sends it as SPLITFROZEN_TOKEN'),
    roundSecret: need('SPLITFROZEN_ROUND_SECRET', "the master round secret; each device's ROUND_SECRET is derived from it (npm run cli -- device-secret)"),
    s3: {
      bucket: need('SPLITFROZEN_S3_BUCKET', 'the bucket for activations, checkpoints and adapters'),
      endpoint: env.SPLITFROZEN_S3_ENDPOINT || undefined,
      region: env.SPLITFROZEN_S3_REGION ?? (env.SPLITFROZEN_S3_ENDPOINT?.includes('r2.cloudflarestorage.com') ? 'auto' : 'us-east-1'),
      accessKeyId: need('SPLITFROZEN_S3_ACCESS_KEY_ID', 'an access key with read/write on the bucket'),
      secretAccessKey: need('SPLITFROZEN_S3_SECRET_ACCESS_KEY', 'the secret of that access key'),
    },
    backend: backendName(env.SPLITFROZEN_BACKEND ?? 'auto'),
    checkpointSeconds: number('SPLITFROZEN_CHECKPOINT_SECONDS', 'seconds between checkpoints within a round, 0 for after every batch'),
    wasmThreads: number('SPLITFROZEN_WASM_THREADS', 'threads of the WASM backend, 1 to 8'),
    dataDirs: env.SPLITFROZEN_DATA_DIRS ? env.SPLITFROZEN_DATA_DIRS.split(':').filter(Boolean) : undefined,
  };
}

function backendName(v: string): ServerConfig['backend'] {
  if (v === 'auto' || (BACKENDS as readonly string[]).includes(v)) return v as ServerConfig['backend'];
  throw new ConfigError(`SPLITFROZEN_BACKEND (--backend) is ${JSON.stringify(v)}: use auto, ${BACKENDS.join(', ')}`);
}

export async function startServer(config: ServerConfig): Promise<RunningServer> {
  const log = config.log ?? ((m: string) => console.log(`[server] ${m}`));
  const backend = await initBackend(config.backend, config.wasmThreads ? { wasmThreads: config.wasmThreads } : {});
  const threads = backend.backend === 'wasm' ? ` on ${getThreadsCount()} thread(s)` : '';
  const backendLine = `${backend.backend}${threads}${backend.skipped.map((s) => ` (skipped ${s.backend}: ${s.reason})`).join('')}`;
  log(`TensorFlow.js backend: ${backendLine}`);
  if (!config.operatorToken) throw new ConfigError('the operator token is empty: anyone could drive the server');
  if (!config.roundSecret) throw new ConfigError('the round secret is empty: device requests could be forged');
  const manager = new RunManager({ store: new S3Store(config.s3), roundSecret: config.roundSecret, log, schedule: config.schedule, checkpointSeconds: config.checkpointSeconds, dataDirs: config.dataDirs });
  await manager.init();
  const app = createApp(manager, config.operatorToken, log);
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: config.host, port: config.port }, () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${config.host}:${port}`;
  log(`listening on ${url}`);
  return { url, manager, backend: backendLine, close: () => new Promise((resolve) => server.close(() => resolve())) };
}
