/**
 * The training server as its own process (npm run server's entry point) on a local stack's storage: what a test or
 * a drill kills with SIGKILL and starts again.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { S3Config } from '../../core/storage/s3.ts';
import { stopChild } from './s3.ts';
import { GLIBC_TUNABLES } from '../../gpu-server/backends/onnxruntime/native-memory.ts';

export interface ServerProcess {
  url: string;
  child: ChildProcess;
  /** SIGKILL, and wait until it is gone. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

export async function startServerProcess(options: {
  s3: S3Config;
  roundSecret: string;
  operatorToken: string;
  env?: Record<string, string>;
}): Promise<ServerProcess> {
  const { s3 } = options;
  const child = spawn(process.execPath, ['--import', 'tsx', 'gpu-server/main.ts'], {
    env: {
      ...process.env,
      // As npm run server starts it (gpu-server/backends/onnxruntime/native-memory.ts).
      GLIBC_TUNABLES,
      SPLITFROZEN_PORT: '0',
      SPLITFROZEN_OPERATOR_TOKEN: options.operatorToken,
      SPLITFROZEN_ROUND_SECRET: options.roundSecret,
      SPLITFROZEN_S3_ENDPOINT: s3.endpoint,
      SPLITFROZEN_S3_BUCKET: s3.bucket,
      SPLITFROZEN_S3_ACCESS_KEY_ID: s3.accessKeyId,
      SPLITFROZEN_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = /listening on (http:\/\/[^\s"]+)/.exec(line);
      if (m) resolve(m[1]);
    });
  });
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    url,
    child,
    kill: async () => {
      child.kill('SIGKILL');
      await gone;
    },
    stop: () => stopChild(child),
  };
}
