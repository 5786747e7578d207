import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Store } from '../../core/storage/s3.ts';
import { localTempDir } from '../../infra/local/paths.ts';
import { startS3, type RunningS3 } from '../../infra/local/s3.ts';
import { scanForText } from './scan.ts';

let s3: RunningS3;
let dir: string;
beforeAll(async () => {
  dir = await localTempDir('test-scan');
  s3 = await startS3({ directory: join(dir, 's3') });
});
afterAll(async () => {
  await s3?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("the drill's scan of storage for shard text", () => {
  it("finds any 8-token window of a shard row inside any object, and not the operator's own text", async () => {
    const store = new S3Store(s3.config);
    const row = 'my neighbour told me the clinic moved to the old bakery on elm street';
    await store.put('runs/a/activations.bin', new Uint8Array([0, 1, 2, 255]));
    await store.put('runs/a/run.json', JSON.stringify({ evalRows: ['the film was fine and the music was fine too'] }));
    expect((await scanForText(store, [row, 'the film was fine and the music was fine too'], ['the film was fine and the music was fine too'])).found).toEqual(
      [],
    );
    await store.put('runs/a/leak.bin', Buffer.concat([Buffer.from([7, 7]), Buffer.from('xx the clinic moved to the old bakery on elm yy'), Buffer.from([0])]));
    const scan = await scanForText(store, [row], []);
    expect(scan.objects).toBe(3);
    expect(scan.found).toContain('runs/a/leak.bin:  the clinic moved to the old bakery on');
    expect(scan.found.every((f) => f.startsWith('runs/a/leak.bin: '))).toBe(true);
  });
});
