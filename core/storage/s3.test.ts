import { mkdtemp, rm, writeFile } from 'node:fs/promises';
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

describe('S3Store credentials', () => {
  const vars = [
    'AWS_ACCESS_KEY_ID',
    'AWS_SECRET_ACCESS_KEY',
    'AWS_SESSION_TOKEN',
    'AWS_PROFILE',
    'AWS_SHARED_CREDENTIALS_FILE',
    'AWS_CONFIG_FILE',
    'AWS_EC2_METADATA_DISABLED',
  ];
  const saved = Object.fromEntries(vars.map((v) => [v, process.env[v]]));
  afterAll(() => {
    for (const v of vars)
      if (saved[v] === undefined) delete process.env[v];
      else process.env[v] = saved[v];
  });

  it("takes the AWS SDK's default chain when given no key: AWS_* variables, then a profile's shared credentials", async () => {
    const { accessKeyId: _id, secretAccessKey: _secret, ...noKey } = server.config;
    const store = () => new S3Store({ ...noKey, bucket: 'splitfrozen' });
    for (const v of vars) delete process.env[v];
    process.env.AWS_CONFIG_FILE = process.env.AWS_SHARED_CREDENTIALS_FILE = join(dir, 'absent');
    // Nothing for the chain to find (no variables, no files, no instance metadata): refused before any request.
    process.env.AWS_EC2_METADATA_DISABLED = 'true';
    await expect(store().put('chain/env.json', '{}')).rejects.toThrow(/storage put 'chain\/env.json' failed.*Could not load credentials/s);
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' });
    await store().put('chain/env.json', '{"from":"env"}');
    expect(new TextDecoder().decode((await store().get('chain/env.json'))!)).toBe('{"from":"env"}');
    // No variables: a named profile in a shared credentials file.
    delete process.env.AWS_ACCESS_KEY_ID;
    delete process.env.AWS_SECRET_ACCESS_KEY;
    process.env.AWS_SHARED_CREDENTIALS_FILE = join(dir, 'credentials');
    await writeFile(process.env.AWS_SHARED_CREDENTIALS_FILE, '[splitfrozen]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n');
    process.env.AWS_PROFILE = 'splitfrozen';
    await store().put('chain/profile.json', '{"from":"profile"}');
    expect(new TextDecoder().decode((await store().get('chain/profile.json'))!)).toBe('{"from":"profile"}');
  });
});

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
