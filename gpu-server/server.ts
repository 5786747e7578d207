/** The training server as a process: storage, TensorFlow.js backend, the run registry and the HTTP API. */
import { logRequest, serverLogger } from './log.ts';
import { serve } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import { S3Store } from '../core/storage/s3.ts';
import { createApp } from './api/app.ts';
import { RunRegistry } from './runs/registry.ts';
import { ConfigError, type ServerConfig } from './config.ts';
import { getThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { initBackend } from './backends/tfjs/runtime.ts';
import { nativeMemoryWarning } from './backends/onnxruntime/native-memory.ts';

export interface RunningServer {
  url: string;
  runs: RunRegistry;
  /** The backend in use, and why the ones before it were skipped, in one line. */
  backend: string;
  close(): Promise<void>;
}

export async function startServer(config: ServerConfig): Promise<RunningServer> {
  // A caller's own log takes the messages alone (tests, scripts); by default pino, with a line per request.
  const logger = config.log ? undefined : serverLogger();
  const log = config.log ?? ((m: string) => logger!.info(m));
  const backend = await initBackend(config.backend, config.wasmThreads ? { wasmThreads: config.wasmThreads } : {});
  const blocks = backend.blocks && { ...backend.blocks, threads: config.ortThreads ?? availableParallelism() };
  const threads =
    backend.backend === 'wasm'
      ? ` on ${getThreadsCount()} thread(s)`
      : blocks
        ? ` (adapted blocks on onnxruntime-node, ${blocks.provider}, ${blocks.threads} thread(s); head, loss and AdamW on TensorFlow.js)`
        : '';
  const backendLine = `${backend.backend}${threads}${backend.skipped.map((s) => ` (skipped ${s.backend}: ${s.reason})`).join('')}`;
  log(`backend: ${backendLine}`);
  const { bucket, endpoint, region, accessKeyId } = config.s3;
  // Which credentials, never their values.
  log(
    `storage: bucket ${bucket} at ${endpoint ?? `AWS S3 (${region})`}, ${accessKeyId ? 'key from SPLITFROZEN_S3_ACCESS_KEY_ID' : "credentials from the AWS SDK's default chain"}`,
  );
  const memory = blocks && nativeMemoryWarning(blocks.provider);
  if (memory) log(memory);
  if (!config.operatorToken) throw new ConfigError('the operator token is empty: anyone could drive the server');
  if (!config.roundSecret) throw new ConfigError('the round secret is empty: device requests could be forged');
  const runs = new RunRegistry({
    store: new S3Store(config.s3),
    roundSecret: config.roundSecret,
    log,
    blocks,
    schedule: config.schedule,
    checkpointSeconds: config.checkpointSeconds,
    dataDirs: config.dataDirs,
  });
  await runs.init();
  // The app logs only what went wrong inside it: at error level.
  const app = createApp(runs, config.operatorToken, config.log ?? ((m) => logger!.error(m)), logger && ((line) => logRequest(logger, line)));
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const fetch = (req: Request, env: { incoming: { url?: string } }) => dotSegmentRefusal(env.incoming.url) ?? app.fetch(req, env);
    const s = serve({ fetch, hostname: config.host, port: config.port }, () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${config.host}:${port}`;
  log(`listening on ${url}`);
  return { url, runs, backend: backendLine, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/**
 * A request path with dot segments ("/runs/..", "/runs/%2e%2e/x") would be resolved by the URL parser into another
 * path ("/runs/.." is the dashboard's "/") before any route sees it: such a request is answered 400 as sent, never
 * served as the path it resolves to.
 */
export function dotSegmentRefusal(rawUrl: string | undefined): Response | undefined {
  const path = (rawUrl ?? '').split('?')[0];
  if (!path.split('/').some((segment) => /^(\.|%2e){1,2}$/i.test(segment))) return undefined;
  return Response.json({ error: 'the path has a "." or ".." segment: send the path itself, not one to be resolved' }, { status: 400 });
}
