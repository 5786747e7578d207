/** The feed's tests' storage (a real S3 server, started per test file) and a device's round written into it. */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { sha256Hex } from '../../core/auth/signing.ts';
import { keys } from '../../core/storage/keys.ts';
import { S3Store } from '../../core/storage/s3.ts';
import { encodeActivationBatch } from '../../core/wire/activations.ts';
import type { ActivationManifest } from '../../core/wire/round.ts';
import { localTempDir } from '../../infra/local/paths.ts';
import { startS3, type RunningS3 } from '../../infra/local/s3.ts';
import { maxBatchBytes, type FeedSource } from './feed.ts';

let s3: RunningS3;
export let store: S3Store;
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

export const D = 8;
export function batchBytes(
  runId: string,
  index: number,
  {
    cut = 2,
    device = 'dev',
    rows = 2,
    seq = 3,
    label = index % 2,
    labels = new Int32Array(rows).fill(label),
    hidden = (i: number) => index + i / 100,
    mask = new Int32Array(rows * seq).fill(1),
  } = {},
) {
  return encodeActivationBatch(
    {
      device,
      runId,
      round: 0,
      cut,
      index: index,
      rows,
      seqLen: seq,
      nEmbd: D,
      hidden: Float32Array.from({ length: rows * seq * D }, (_, i) => hidden(i)),
      mask,
      labels,
    },
    'fp32',
  );
}

/** Writes a device's round: batches (optionally altered after their checksums were taken), then the manifest. */
export async function writeRound(runId: string, n: number, { alter = new Map<number, Uint8Array>(), cut = 2, delayMs = 0 } = {}) {
  const entries = [];
  for (let i = 0; i < n; i++) {
    const bytes = batchBytes(runId, i);
    entries.push({ index: i, rows: 2, seqLen: 3, bytes: bytes.byteLength, sha256: await sha256Hex(bytes) });
    await store.put(keys.activationBatch(runId, 'dev', 0, i), alter.get(i) ?? bytes);
    if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
  }
  const manifest: ActivationManifest = {
    version: 1,
    device: 'dev',
    runId,
    round: 0,
    cut,
    dtype: 'fp32',
    modelSha256: 'x',
    rows: 2 * n,
    defence: { mechanism: 'none' },
    batches: entries,
  };
  await store.put(keys.activationManifest(runId, 'dev', 0), JSON.stringify(manifest));
}

/** What the plan expects of the device; hidden-state norms bounded at 1000 (writeRound's batches stay well under). */
export const src = (runId: string, batches = 5): FeedSource => ({
  runId,
  deviceId: 'dev',
  round: 0,
  cut: 2,
  nEmbd: D,
  labels: { perToken: false, classes: 2 },
  batches,
  maxBatchBytes: maxBatchBytes(2, 3, D),
  modelSha256: 'x',
  dtype: 'fp32',
  rows: 2 * batches,
  batchSize: 2,
  seqLen: 3,
  normBound: () => 1000,
});
export async function drain(feed: AsyncIterable<{ index: number }>) {
  const out = [];
  for await (const b of feed) out.push(b.index);
  return out;
}
