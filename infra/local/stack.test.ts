import { rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { S3Store } from '../../core/storage/s3.ts';
import { startStack } from './stack.ts';
import { localTempDir } from './paths.ts';

const isListening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });

describe('local stack', () => {
  let dir: string;
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('starts S3 and devices with their own ids, tokens and private state, and stops everything', async () => {
    dir = await localTempDir('test-stack');
    const stack = await startStack({ dir, devices: 2 });
    const [a, b] = stack.devices;
    expect(new Set([a.id, b.id])).toEqual(new Set(['device-1', 'device-2']));
    expect(a.ownerToken).not.toBe(b.ownerToken);
    for (const d of stack.devices) {
      expect(d.url.hostname).toBe('127.0.0.1');
      expect(await (await fetch(new URL('/health', d.url))).json()).toMatchObject({ device: d.id });
    }
    // A shard uploaded to one device is not on the other, and the other's owner token does not open it.
    const put = await fetch(new URL('/shards/mine?format=jsonl', a.url), {
      method: 'PUT',
      headers: { authorization: `Bearer ${a.ownerToken}` },
      body: '{"text":"x","label":1}',
    });
    expect(put.status).toBe(201);
    expect((await (await fetch(new URL('/shards', b.url), { headers: { authorization: `Bearer ${b.ownerToken}` } })).json()).shards).toEqual([]);
    expect((await fetch(new URL('/shards', a.url), { headers: { authorization: `Bearer ${b.ownerToken}` } })).status).toBe(403);
    const store = new S3Store(stack.s3.config);
    await store.put('probe', 'ok');
    expect(new TextDecoder().decode(await store.get('probe'))).toBe('ok');

    const ports = [stack.s3.port, ...stack.devices.map((d) => Number(d.url.port))];
    await stack.stop();
    for (const port of ports) expect(await isListening(port)).toBe(false);
  });
});
