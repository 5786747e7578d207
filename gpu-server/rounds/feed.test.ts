import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../../core/auth/signing.ts';
import { keys } from '../../core/storage/keys.ts';
import { S3Store } from '../../core/storage/s3.ts';
import { encodeActivationBatch } from '../../core/wire/activations.ts';
import type { ActivationManifest, RoundStatus } from '../../core/wire/round.ts';
import { localTempDir } from '../../infra/local/paths.ts';
import { startS3, type RunningS3 } from '../../infra/local/s3.ts';
import { activationFeed, DeviceRoundFailed, type FeedSource } from './feed.ts';

let s3: RunningS3;
let store: S3Store;
let dir: string;
beforeAll(async () => {
  dir = await localTempDir('test-feed');
  s3 = await startS3({ directory: join(dir, 's3') });
  store = new S3Store(s3.config);
});
afterAll(async () => {
  await s3?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const D = 8;
function batchBytes(runId: string, index: number, { cut = 2, device = 'dev', rows = 2, seq = 3 } = {}) {
  return encodeActivationBatch(
    { device, runId, round: 0, cut, batch: index, rows, seqLen: seq, nEmbd: D, hidden: Float32Array.from({ length: rows * seq * D }, (_, i) => index + i / 100), mask: new Int32Array(rows * seq).fill(1), labels: new Int32Array(rows).fill(index % 2) },
    'fp32',
  );
}

/** Writes a device's round: batches (optionally altered after their checksums were taken), then the manifest. */
async function writeRound(runId: string, n: number, { alter = new Map<number, Uint8Array>(), cut = 2, delayMs = 0 } = {}) {
  const entries = [];
  for (let i = 0; i < n; i++) {
    const bytes = batchBytes(runId, i);
    entries.push({ index: i, rows: 2, seqLen: 3, bytes: bytes.byteLength, sha256: await sha256Hex(bytes) });
    await store.put(keys.activationBatch(runId, 'dev', 0, i), alter.get(i) ?? bytes);
    if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
  }
  const manifest: ActivationManifest = { version: 1, device: 'dev', runId, round: 0, cut, dtype: 'fp32', modelSha256: 'x', rows: 2 * n, batches: entries };
  await store.put(keys.activationManifest(runId, 'dev', 0), JSON.stringify(manifest));
}

const src = (runId: string): FeedSource => ({ runId, deviceId: 'dev', round: 0, cut: 2, nEmbd: D });
async function drain(feed: AsyncIterable<{ batch: number }>) {
  const out = [];
  for await (const b of feed) out.push(b.batch);
  return out;
}

describe('activation feed (poller)', () => {
  it('waits for objects as they arrive and yields every verified batch in the training order', async () => {
    const writing = writeRound('r-ok', 5, { delayMs: 30 });
    const got = await drain(activationFeed(store, src('r-ok'), { pollMs: 20, prefetch: 2, order: (b) => b.map((_, i) => i).reverse() }));
    await writing;
    expect(got).toEqual([4, 3, 2, 1, 0]);
  });

  it('rejects a bad object with its reason and never yields it', async () => {
    const flipped = batchBytes('r-bad', 1);
    flipped[flipped.length - 1] ^= 1;
    const wrongCut = batchBytes('r-bad', 3, { cut: 1 });
    await writeRound('r-bad', 5, { alter: new Map([[1, flipped], [3, wrongCut]]) });
    const rejected: string[] = [];
    const got = await drain(activationFeed(store, src('r-bad'), { onReject: (k, why) => rejected.push(`${k.split('/').pop()}: ${why}`) }));
    expect(got).toEqual([0, 2, 4]);
    expect(rejected[0]).toBe('000001.safetensors: SHA-256 differs from the manifest');
    expect(rejected[1]).toMatch(/^000003.safetensors: size \d+ differs from the manifest's \d+$|^000003.safetensors: SHA-256 differs/);
  });

  it('checks the metadata and shapes inside an object whose checksum the manifest vouches for', async () => {
    // A device that labels its batch with the wrong cut, consistently: size and hash match, the content does not.
    const bytes = batchBytes('r-meta', 0, { cut: 1 });
    await store.put(keys.activationBatch('r-meta', 'dev', 0, 0), bytes);
    const manifest: ActivationManifest = { version: 1, device: 'dev', runId: 'r-meta', round: 0, cut: 2, dtype: 'fp32', modelSha256: 'x', rows: 2, batches: [{ index: 0, rows: 2, seqLen: 3, bytes: bytes.byteLength, sha256: await sha256Hex(bytes) }] };
    await store.put(keys.activationManifest('r-meta', 'dev', 0), JSON.stringify(manifest));
    const rejected: string[] = [];
    expect(await drain(activationFeed(store, src('r-meta'), { onReject: (_, why) => rejected.push(why) }))).toEqual([]);
    expect(rejected).toEqual(['cut 1, the plan says 2']);
    expect(await drain(activationFeed(store, { ...src('r-meta'), cut: 1, nEmbd: 16 }, { onReject: (_, why) => rejected.push(why) })).catch((e) => e.message)).toBe('device dev round 0: the manifest says cut 2, the plan says 1');
  });

  it('skips batches already trained on, and gives up on a device whose round failed', async () => {
    await writeRound('r-skip', 3);
    const skip = new Set([keys.activationBatch('r-skip', 'dev', 0, 1)]);
    expect(await drain(activationFeed(store, src('r-skip'), { skip }))).toEqual([0, 2]);
    const failed: RoundStatus = { device: 'dev', runId: 'r-none', round: 0, state: 'failed', batchesDone: 0, batchesTotal: 3, failures: [], tokens: 0, forwardMs: 0, error: 'model segment hash mismatch' };
    await expect(drain(activationFeed(store, src('r-none'), { pollMs: 5, deviceStatus: async () => failed }))).rejects.toThrow(DeviceRoundFailed);
  });
});
