/** The embedded S3-compatible server (s3rver) in a child process on 127.0.0.1, data under a project-local folder. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { S3Config } from '../../core/storage/s3.ts';

export interface RunningS3 {
  /** Connection settings for S3Store: s3rver's fixed key. */
  config: S3Config & Required<Pick<S3Config, 'accessKeyId' | 'secretAccessKey'>>;
  port: number;
  stop(): Promise<void>;
}

/** s3rver's fixed credentials. */
const S3RVER_KEY = 'S3RVER';

export async function startS3({ directory, bucket = 'splitfrozen', port = 0 }: { directory: string; bucket?: string; port?: number }): Promise<RunningS3> {
  await mkdir(directory, { recursive: true });
  const script = fileURLToPath(new URL('s3-server.mjs', import.meta.url));
  // s3rver builds list continuation tokens with a cipher that Node 17+ keeps behind the legacy OpenSSL provider.
  // Its stdin is a pipe from this process: when this process ends, however it ends, the server sees the pipe close and stops.
  const child = spawn(process.execPath, ['--openssl-legacy-provider', script, directory, bucket, String(port)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const ready = await new Promise<{ port: number }>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the S3 server exited with code ${code} before it was ready (is port ${port} free?)`)));
    createInterface({ input: child.stdout! }).once('line', (line) => resolve(JSON.parse(line)));
  });
  return {
    port: ready.port,
    config: { bucket, endpoint: `http://127.0.0.1:${ready.port}`, accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_KEY },
    stop: () => stopChild(child),
  };
}

export function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}
