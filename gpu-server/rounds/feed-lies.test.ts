/** The feed against a lying device: every claim of its manifest and objects is checked against the plan. */
import { describe, expect, it } from 'vitest';
import { sha256Hex } from '../../core/auth/signing.ts';
import { keys } from '../../core/storage/keys.ts';
import { serializeSafetensors } from '../../core/tensors/safetensors.ts';
import type { ObjectStore } from '../../core/storage/store.ts';
import { canonicalDefence, noiseNormBound, type Defence } from '../../core/privacy/defence.ts';
import { encodeActivationBatch } from '../../core/wire/activations.ts';
import { uploadNormBound } from './bounds.ts';
import { activationFeed, maxBatchBytes } from './feed.ts';
import { batchBytes, D, drain, src, store, writeRound } from './feed.fixture.ts';

/** Writes `objects` as batches 0.. under a manifest that vouches for them (sizes and hashes), with manifest fields over. */
async function vouched(runId: string, objects: Uint8Array[], over: Record<string, unknown> = {}, batch: (i: number) => Record<string, unknown> = () => ({})) {
  const batches = [];
  for (const [i, bytes] of objects.entries()) {
    await store.put(keys.activationBatch(runId, 'dev', 0, i), bytes);
    batches.push({ index: i, rows: 2, seqLen: 3, bytes: bytes.byteLength, sha256: await sha256Hex(bytes), ...batch(i) });
  }
  const manifest = {
    version: 1,
    device: 'dev',
    runId,
    round: 0,
    cut: 2,
    dtype: 'fp32',
    modelSha256: 'x',
    rows: 2 * objects.length,
    defence: { mechanism: 'none' },
    batches,
    ...over,
  };
  await store.put(keys.activationManifest(runId, 'dev', 0), JSON.stringify(manifest));
}

const failure = (runId: string, batches = 1) =>
  drain(activationFeed(store, src(runId, batches))).then(
    () => 'accepted',
    (e: Error) => e.message,
  );

describe('activation feed against a lying device', () => {
  it('refuses huge finite hidden states that a plain finiteness check lets through', async () => {
    const huge = batchBytes('r-huge', 0, { hidden: () => 3e38 });
    await vouched('r-huge', [huge, batchBytes('r-huge', 1)]);
    const rejected: string[] = [];
    // Undefended (no bound beyond finite values), the batch would be trained on.
    expect(await drain(activationFeed(store, { ...src('r-huge', 2), normBound: () => Infinity }))).toEqual([0, 1]);
    expect(await drain(activationFeed(store, src('r-huge', 2), { onReject: (_, why) => rejected.push(why) }))).toEqual([1]);
    expect(rejected).toEqual(["position 0's hidden state is not finite or its norm exceeds 1000, the bound at cut 2 under its defence"]);
  });

  it('refuses huge values under a defence whose epsilon the device claims near zero', async () => {
    const defence: Defence = { mechanism: 'metric', epsilon: 1e-300 };
    const hidden = new Float32Array(2 * 3 * D).fill(3e38);
    const batch = { device: 'dev', runId: 'r-eps', round: 0, cut: 2, index: 0, rows: 2, seqLen: 3, nEmbd: D, mask: new Int32Array(6).fill(1) };
    const huge = encodeActivationBatch({ ...batch, hidden, labels: new Int32Array(2), defence: canonicalDefence(defence) }, 'fp32');
    await vouched('r-eps', [huge], { defence, clip: 1 });
    const cal = { clip: 1, maxNorm: 2 };
    // Bounded by the noise the claimed defence allows, and nothing else, the batch would be trained on.
    const claimed = { ...src('r-eps', 1), normBound: (d: Defence, clip: number | undefined) => clip! * 1.001 + noiseNormBound(d, clip!, D) };
    expect(await drain(activationFeed(store, claimed))).toEqual([0]);
    const bounded = { ...src('r-eps', 1), normBound: (d: Defence, clip: number | undefined) => uploadNormBound(cal, d, clip, D) };
    expect(await drain(activationFeed(store, bounded)).catch((e: Error) => e.message)).toMatch(
      /^device dev round 0: the manifest's defence \(metric eps 1e-300\) allows noise of norm up to .* the server trains under/,
    );
  });

  it('refuses attention masks no tokenizer gives: values past 0 and 1, a hole, a row with no real position', async () => {
    // The server's attention scales and fills with the mask's values, and Llama counts positions from their sum.
    const masks = [
      [2e9, -7, 0, 1, 1, 1],
      [1, 0, 1, 1, 1, 1],
      [0, 0, 0, 1, 1, 1],
      [1, 1, 0, 1, 0, 0],
    ];
    await vouched(
      'r-mask',
      masks.map((m, i) => batchBytes('r-mask', i, { mask: Int32Array.from(m) })),
    );
    const rejected: string[] = [];
    expect(await drain(activationFeed(store, src('r-mask', 4), { onReject: (_, why) => rejected.push(why) }))).toEqual([3]);
    expect(rejected).toEqual([
      "row 0's attention mask starts with 2000000000: a row starts with a real position (1)",
      "row 0's attention mask is 1 at position 2: right-padded 1s then 0s only",
      "row 0's attention mask starts with 0: a row starts with a real position (1)",
    ]);
  });

  it('fails a device whose manifest disagrees with the plan: segment, dtype, rows, batch shapes, clip', async () => {
    const ok = batchBytes('r-m', 0);
    await vouched('r-m1', [ok], { modelSha256: 'y' });
    expect(await failure('r-m1')).toBe('device dev round 0: the manifest names segment "y", the plan x');
    await vouched('r-m2', [ok], { dtype: 'fp64' });
    expect(await failure('r-m2')).toBe('device dev round 0: the manifest says dtype "fp64", the run\'s is fp32');
    await vouched('r-m3', [ok], { rows: 400_000 });
    expect(await failure('r-m3')).toBe('device dev round 0: the manifest says 400000 rows, the plan 2');
    await vouched('r-m4', [ok], { rows: 2 }, () => ({ rows: 3 }));
    expect(await failure('r-m4')).toBe(
      "device dev round 0: the manifest's batch 0 needs rows in 1..2, seqLen in 1..3, bytes in 1..65784 (a batch of the plan) and a hex sha256",
    );
    await vouched('r-m5', [ok], {}, () => ({ seqLen: 4096 }));
    expect(await failure('r-m5')).toBe(
      "device dev round 0: the manifest's batch 0 needs rows in 1..2, seqLen in 1..3, bytes in 1..65784 (a batch of the plan) and a hex sha256",
    );
    await vouched('r-m6', [ok], { defence: { mechanism: 'gaussian', epsilon: 8, delta: 1e-5 }, clip: 1e30 });
    const clipped = { ...src('r-m6', 1), normBound: (_: unknown, clip: number | undefined) => (clip! > 10 ? `the manifest's clip ${clip} is too large` : 10) };
    expect(await drain(activationFeed(store, clipped)).catch((e: Error) => e.message)).toBe("device dev round 0: the manifest's clip 1e+30 is too large");
  });

  it("fails only the device whose manifest's values would throw when quoted, and quotes them cut short and escaped", async () => {
    const ok = batchBytes('r-q', 0);
    // An object whose toString is no function throws when interpolated: that failed the round, at every retry.
    await vouched('r-q1', [ok], { device: { toString: 1 } });
    expect(await failure('r-q1')).toBe('device dev round 0: the manifest is for {"toString":1}/"r-q1"/0');
    await vouched('r-q2', [ok], { cut: { toString: 1 } });
    expect(await failure('r-q2')).toBe('device dev round 0: the manifest says cut {"toString":1}, the plan says 2');
    // Nested past what JSON.stringify can print.
    await store.put(keys.activationManifest('r-q3', 'dev', 0), `{"version":1,"batches":[],"device":${'['.repeat(200_000)}${']'.repeat(200_000)}}`);
    expect(await failure('r-q3')).toBe('device dev round 0: the manifest is for object/undefined/undefined');
    // Lines forged into the log: 256 KB with newlines and terminal escapes.
    await vouched('r-q4', [ok], { runId: `x\n[server] run r-q4 trained\u001b[2J${'A'.repeat(256 * 1024)}` });
    const forged = await failure('r-q4');
    expect(forged.length).toBeLessThan(700);
    for (const unsafe of ['\n', '\u001b']) expect(forged).not.toContain(unsafe);
    // The bytes a manifest claims count into the run's metrics: no more than a batch of the plan can hold.
    await vouched('r-q5', [ok], {}, () => ({ bytes: Number.MAX_SAFE_INTEGER }));
    expect(await failure('r-q5')).toMatch(/^device dev round 0: the manifest's batch 0 needs .* bytes in 1\.\.65784/);
  });

  it('refuses F64 hidden states and batches of another dtype than the run', async () => {
    const f64 = serializeSafetensors(
      {
        hidden_states: { dtype: 'F64', shape: [2, 3, D], data: new Float64Array(2 * 3 * D) },
        attention_mask: { dtype: 'I32', shape: [2, 3], data: new Int32Array(6).fill(1) },
        labels: { dtype: 'I32', shape: [2], data: new Int32Array(2) },
      },
      { device: 'dev', run: 'r-f64', round: '0', cut: '2', batch: '0' },
    );
    await vouched('r-f64', [f64, batchBytes('r-f64', 1)]);
    const rejected: string[] = [];
    expect(await drain(activationFeed(store, src('r-f64', 2), { onReject: (_, why) => rejected.push(why) }))).toEqual([1]);
    expect(rejected[0]).toMatch(/tensor 'hidden_states' is F64: activations travel as F32 or F16$/);
    const fp16Run = await drain(activationFeed(store, { ...src('r-f64', 2), dtype: 'fp16' }, { onReject: (_, why) => rejected.push(why) })).catch(
      (e: Error) => e.message,
    );
    expect(fp16Run).toBe('device dev round 0: the manifest says dtype "fp32", the run\'s is fp16');
  });

  it('reads an object swapped for a larger one after the listing only up to its manifest size, once', async () => {
    await writeRound('r-swap', 2);
    const key = keys.activationBatch('r-swap', 'dev', 0, 1);
    const honestSize = (await store.head(key))!.size;
    // The device overwrites the batch through its presigned URL after the server listed it: 8 MB where the manifest says ~1 KB.
    await store.put(key, new Uint8Array(8 * 1024 * 1024));
    const gets: Array<[string, number | undefined]> = [];
    const lying: ObjectStore = Object.assign(Object.create(store), {
      // What the listing and HEAD said before the swap.
      list: async function* (prefix: string, after?: string) {
        for await (const o of store.list(prefix, after)) yield o.key === key ? { ...o, size: honestSize } : o;
      },
      head: async (k: string) => (k === key ? { key, size: honestSize } : store.head(k)),
      get: (k: string, o?: { maxBytes?: number }) => (gets.push([k, o?.maxBytes]), store.get(k, o)),
    });
    const rejected: string[] = [];
    expect(await drain(activationFeed(lying, src('r-swap', 2), { onReject: (_, why) => rejected.push(why) }))).toEqual([0]);
    // Fetched once, capped at what a batch of the plan can hold (prefetched before the manifest) or the manifest's size.
    const fetched = gets.filter(([k]) => k === key);
    expect(fetched).toHaveLength(1);
    expect(fetched[0][1]).toBeLessThanOrEqual(maxBatchBytes(2, 3, D));
    expect(rejected).toEqual([`object '${key}' is 8388608 bytes, more than the ${fetched[0][1]} bytes allowed: not downloaded`]);
  });

  it('ends the wait for a device that never uploads as soon as the round is cancelled', async () => {
    const cancel = new AbortController();
    const started = performance.now();
    setTimeout(() => cancel.abort(), 50);
    const error = await drain(activationFeed(store, src('r-stall', 1), { pollMs: 1000, deadlineMs: 60_000, signal: cancel.signal })).catch(
      (e: Error) => e.message,
    );
    expect(error).toBe('device dev round 0: cancelled');
    expect(performance.now() - started).toBeLessThan(1000);
  });
});
