import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startS3, type RunningS3 } from '../../infra/local/s3.ts';
import { objectStoreConformance } from './conformance.ts';
import { S3Store } from './s3.ts';
import { keys, checkId } from './keys.ts';

let server: RunningS3;
let dir: string;
let n = 0;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'splitfrozen-s3-'));
  server = await startS3({ directory: dir });
});
afterAll(async () => {
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

// Each conformance case gets an empty store: a fresh bucket on the same real server.
objectStoreConformance(
  'S3Store on s3rver',
  async () => {
    const bucket = `test-${++n}`;
    const { accessKeyId, secretAccessKey, endpoint } = server.config;
    const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId, secretAccessKey } });
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
    return new S3Store({ ...server.config, bucket });
  },
  { checksPresignedKey: false },
);

describe('S3Store errors', () => {
  it('names the operation and key when the server cannot be reached', async () => {
    const dead = new S3Store({ ...server.config, endpoint: 'http://127.0.0.1:9' });
    await expect(dead.put('runs/x/run.json', '{}')).rejects.toThrow(/storage put 'runs\/x\/run.json' failed/);
    await expect(dead.get('runs/x/run.json')).rejects.toThrow(/storage get 'runs\/x\/run.json' failed/);
  });
});

describe('key layout', () => {
  it('follows docs/architecture.md, with batch numbers that sort in order', () => {
    expect(keys.activationBatch('run1', 'dev-a', 3, 12)).toBe('runs/run1/activations/dev-a/3/000012.safetensors');
    expect(keys.activationManifest('run1', 'dev-a', 3)).toBe('runs/run1/activations/dev-a/3/_complete.json');
    expect(keys.devicePrefix('abc', 2)).toBe('models/abc/device/cut-2.onnx');
    expect(keys.activationBatch('r', 'd', 0, 9) < keys.activationBatch('r', 'd', 0, 10)).toBe(true);
  });

  it('refuses ids that could escape their prefix', () => {
    expect(() => checkId('device', '../x')).toThrow(/device '..\/x' is not a valid id/);
    expect(() => checkId('run', 'a/b')).toThrow(/not a valid id/);
    expect(checkId('run', 'run-2026.11_a')).toBe('run-2026.11_a');
  });
});
