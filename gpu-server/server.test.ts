import { request } from 'node:http';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localTempDir } from '../infra/local/paths.ts';
import { startS3, type RunningS3 } from '../infra/local/s3.ts';
import { startServer, type RunningServer } from './server.ts';

let dir: string;
let s3: RunningS3;
let server: RunningServer;
beforeAll(async () => {
  dir = await localTempDir('test-server');
  s3 = await startS3({ directory: join(dir, 's3') });
  server = await startServer({ host: '127.0.0.1', port: 0, operatorToken: 'op', roundSecret: 'r', s3: s3.config, backend: 'wasm', log: () => {} });
});
afterAll(async () => {
  await server?.close();
  await s3?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** GET with the path as given (fetch would resolve its dot segments before sending). */
function rawGet(path: string): Promise<{ status: number; body: string }> {
  const url = new URL(server.url);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, headers: { authorization: 'Bearer op' } }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('training server process', () => {
  it('answers 400 to a path with dot segments instead of serving the path it resolves to', async () => {
    for (const path of ['/runs/..', '/runs/%2e%2e/rounds', '/runs/./x', '/runs/x/%2E']) {
      const got = await rawGet(path);
      expect([path, got.status]).toEqual([path, 400]);
      expect(JSON.parse(got.body).error).toMatch(/"\." or "\.\." segment/);
    }
    expect((await rawGet('/')).status).toBe(200);
    expect((await rawGet('/runs')).status).toBe(200);
    expect((await rawGet('/runs/x..y')).status).toBe(404);
  });
});
