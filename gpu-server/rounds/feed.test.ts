import { describe, expect, it } from 'vitest';
import { sha256Hex } from '../../core/auth/signing.ts';
import { keys } from '../../core/storage/keys.ts';
import type { ActivationManifest, RoundStatus } from '../../core/wire/round.ts';
import type { ObjectStore } from '../../core/storage/store.ts';
import { activationFeed, DeviceRoundFailed, maxBatchBytes } from './feed.ts';
import { batchBytes, D, drain, src, store, writeRound } from './feed.fixture.ts';

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
    await writeRound('r-bad', 5, {
      alter: new Map([
        [1, flipped],
        [3, wrongCut],
      ]),
    });
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
    const manifest: ActivationManifest = {
      version: 1,
      device: 'dev',
      runId: 'r-meta',
      round: 0,
      cut: 2,
      dtype: 'fp32',
      modelSha256: 'x',
      rows: 2,
      defence: { mechanism: 'none' },
      batches: [{ index: 0, rows: 2, seqLen: 3, bytes: bytes.byteLength, sha256: await sha256Hex(bytes) }],
    };
    await store.put(keys.activationManifest('r-meta', 'dev', 0), JSON.stringify(manifest));
    const rejected: string[] = [];
    expect(await drain(activationFeed(store, src('r-meta', 1), { onReject: (_, why) => rejected.push(why) }))).toEqual([]);
    expect(rejected).toEqual(['cut 1, the plan says 2']);
    expect(
      await drain(activationFeed(store, { ...src('r-meta', 1), cut: 1, nEmbd: 16 }, { onReject: (_, why) => rejected.push(why) })).catch((e) => e.message),
    ).toBe('device dev round 0: the manifest says cut 2, the plan says 1');
  });

  it('skips batches already trained on, and gives up on a device whose round failed', async () => {
    await writeRound('r-skip', 3);
    const skip = new Set([keys.activationBatch('r-skip', 'dev', 0, 1)]);
    expect(await drain(activationFeed(store, src('r-skip', 3), { skip }))).toEqual([0, 2]);
    const failed: RoundStatus = {
      device: 'dev',
      runId: 'r-none',
      round: 0,
      state: 'failed',
      batchesDone: 0,
      batchesTotal: 3,
      failures: [],
      tokens: 0,
      forwardMs: 0,
      error: 'model segment hash mismatch',
    };
    await expect(drain(activationFeed(store, src('r-none'), { pollMs: 5, deviceStatus: async () => failed }))).rejects.toThrow(DeviceRoundFailed);
  });

  it('retries storage calls, and a download that keeps failing fails the device when reached, never the process', async () => {
    await writeRound('r-flaky', 5);
    // The real store, with GETs of chosen keys failing a number of times (fault injection, not a fake store).
    const failures = new Map<string, number>();
    const flaky: ObjectStore = Object.assign(Object.create(store), {
      get: async (key: string) => {
        const left = failures.get(key) ?? 0;
        if (left > 0) {
          failures.set(key, left - 1);
          throw new Error('connection reset');
        }
        return store.get(key);
      },
    });
    const key = (i: number) => keys.activationBatch('r-flaky', 'dev', 0, i);
    for (let i = 0; i < 5; i++) failures.set(key(i), 2);
    expect(await drain(activationFeed(flaky, src('r-flaky'), { backoffMs: 1 }))).toEqual([0, 1, 2, 3, 4]);

    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      failures.set(key(3), Infinity);
      const got: number[] = [];
      const feed = activationFeed(flaky, src('r-flaky'), { prefetch: 4, backoffMs: 1, attempts: 3 });
      const error = await (async () => {
        for await (const b of feed) {
          got.push(b.index);
          await new Promise((r) => setTimeout(r, 20)); // training, while batch 3's download fails in the background
        }
      })().catch((e: Error) => e.message);
      expect(got).toEqual([0, 1, 2]);
      expect(error).toBe(`GET ${key(3)} failed after 3 attempts: connection reset`);
      await new Promise((r) => setTimeout(r, 20));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('waits through a device that cannot be reached for a while, and gives up on one that stays unreachable', async () => {
    const down = async (): Promise<RoundStatus | undefined> => {
      throw new Error('connection refused');
    };
    await expect(drain(activationFeed(store, src('r-gone', 2), { pollMs: 2, attempts: 3, deviceStatus: down }))).rejects.toThrow(
      'device dev round 0: its status could not be read 3 times in a row: connection refused',
    );
    // A device that says it is working but never finishes is given up on at the deadline.
    const working = async () => undefined;
    await expect(drain(activationFeed(store, src('r-never', 2), { pollMs: 2, deadlineMs: 50, deviceStatus: working }))).rejects.toThrow(
      'device dev round 0: no manifest 0.05 s after it was asked to start',
    );
    // The deadline runs from when the device was asked, not from its turn: one asked long before is given up on at
    // the first look, without a poll's wait, unless its manifest is already there.
    const askedAt = Date.now() - 60_000;
    const looked = performance.now();
    await expect(drain(activationFeed(store, src('r-late', 2), { pollMs: 1000, deadlineMs: 30_000, askedAt, deviceStatus: working }))).rejects.toThrow(
      'device dev round 0: no manifest 30 s after it was asked to start',
    );
    expect(performance.now() - looked).toBeLessThan(900);
    await writeRound('r-done', 2);
    expect(await drain(activationFeed(store, src('r-done', 2), { pollMs: 2, deadlineMs: 30_000, askedAt }))).toEqual([0, 1]);
    let calls = 0;
    const restarting = async () => (++calls <= 2 ? down() : undefined);
    const writing = new Promise((r) => setTimeout(r, 150)).then(() => writeRound('r-back', 2));
    expect(await drain(activationFeed(store, src('r-back', 2), { pollMs: 2, attempts: 3, deviceStatus: restarting }))).toEqual([0, 1]);
    await writing;
    expect(calls).toBeGreaterThanOrEqual(2); // both failed, and the device was not given up on
  });

  it('checks sizes before downloading: an object larger than a batch of the plan, or than its manifest says, is never fetched', async () => {
    await writeRound('r-size', 3);
    const huge = new Uint8Array(maxBatchBytes(2, 3, D) + 1);
    await store.put(keys.activationBatch('r-size', 'dev', 0, 1), huge);
    const fetched: string[] = [];
    const watching: ObjectStore = Object.assign(Object.create(store), { get: (key: string) => (fetched.push(key), store.get(key)) });
    const rejected: string[] = [];
    expect(await drain(activationFeed(watching, src('r-size', 3), { onReject: (_, why) => rejected.push(why) }))).toEqual([0, 2]);
    expect(rejected).toEqual([expect.stringMatching(/^stored size \d+ differs from the manifest's \d+$/)]);
    expect(fetched).not.toContain(keys.activationBatch('r-size', 'dev', 0, 1));

    // A listing that caught an object mid-write (its size so far) does not make it refused.
    await writeRound('r-midwrite', 2);
    const midWrite: ObjectStore = Object.assign(Object.create(store), {
      list: async function* (prefix: string, after?: string) {
        for await (const o of store.list(prefix, after)) yield o.key.endsWith('000001.safetensors') ? { ...o, size: 65536 } : o;
      },
    });
    expect(await drain(activationFeed(midWrite, src('r-midwrite', 2), { onReject: (_, why) => rejected.push(why) }))).toEqual([0, 1]);
    expect(rejected).toHaveLength(1);
  });

  it('fails the device, naming why, on a manifest that is truncated, null, or out of step with the plan', async () => {
    const manifestAs = async (runId: string, text: string, batches = 1) => {
      await store.put(keys.activationManifest(runId, 'dev', 0), text);
      return drain(activationFeed(store, src(runId, batches))).catch((e: Error) => [e instanceof DeviceRoundFailed, e.message]);
    };
    expect(await manifestAs('r-trunc', '{"version":1,"dev')).toEqual([
      true,
      expect.stringMatching(/^device dev round 0: the manifest is not JSON \(17 bytes\)/),
    ]);
    expect(await manifestAs('r-null', 'null')).toEqual([true, 'device dev round 0: the manifest is not a version-1 activation manifest']);
    await writeRound('r-count', 2);
    expect(await drain(activationFeed(store, src('r-count', 3))).catch((e: Error) => e.message)).toBe(
      'device dev round 0: the manifest lists 2 batches, the plan 3',
    );
    const batch = { rows: 2, seqLen: 3, bytes: 10, sha256: 'a'.repeat(64) };
    const skewed = {
      version: 1,
      device: 'dev',
      runId: 'r-index',
      round: 0,
      cut: 2,
      dtype: 'fp32',
      modelSha256: 'x',
      rows: 4,
      batches: [
        { index: 1, ...batch },
        { index: 0, ...batch },
      ],
    };
    expect(await manifestAs('r-index', JSON.stringify(skewed), 2)).toEqual([
      true,
      "device dev round 0: the manifest's batch 0 has index 1: indices must be 0..1 in order",
    ]);
    // The defence every batch carries: named, one the project knows, with the clip it was applied at.
    const one = { ...skewed, runId: 'r-defence', rows: 2, batches: [{ index: 0, ...batch }] };
    expect(await manifestAs('r-defence', JSON.stringify(one))).toEqual([
      true,
      'device dev round 0: the manifest\'s defence: must be a level name or {"mechanism", "epsilon", "delta"}',
    ]);
    expect(await manifestAs('r-defence', JSON.stringify({ ...one, defence: { mechanism: 'gaussian', epsilon: 8, delta: 1e-5 } }))).toEqual([
      true,
      "device dev round 0: the manifest's defence clips, but its clip is undefined",
    ]);
  });

  it('refuses a batch whose defence is not the one its manifest names', async () => {
    const defence = { mechanism: 'gaussian', epsilon: 8, delta: 1e-5 } as const;
    const bytes = batchBytes('r-mixed', 0);
    await store.put(keys.activationBatch('r-mixed', 'dev', 0, 0), bytes);
    const manifest: ActivationManifest = {
      version: 1,
      device: 'dev',
      runId: 'r-mixed',
      round: 0,
      cut: 2,
      dtype: 'fp32',
      modelSha256: 'x',
      rows: 2,
      defence,
      clip: 1.5,
      batches: [{ index: 0, rows: 2, seqLen: 3, bytes: bytes.byteLength, sha256: await sha256Hex(bytes) }],
    };
    await store.put(keys.activationManifest('r-mixed', 'dev', 0), JSON.stringify(manifest));
    const rejected: string[] = [];
    expect(await drain(activationFeed(store, src('r-mixed', 1), { onReject: (_, why) => rejected.push(why) }))).toEqual([]);
    expect(rejected).toEqual(['defence none, the manifest says {"mechanism":"gaussian","epsilon":8,"delta":0.00001}']);
  });

  it('refuses non-finite activations and labels outside the task, even when the manifest vouches for them', async () => {
    const nan = batchBytes('r-values', 0, { hidden: (i) => (i === 5 ? NaN : i) });
    const label = batchBytes('r-values', 1, { label: 2 });
    await writeRound('r-values', 3, {
      alter: new Map([
        [0, nan],
        [1, label],
      ]),
    });
    // The manifest's checksums are of the clean batches: rewrite it over the altered ones, as a faulty device would.
    const manifest = JSON.parse(new TextDecoder().decode(await store.get(keys.activationManifest('r-values', 'dev', 0))));
    for (const [i, bytes] of [nan, label].entries()) Object.assign(manifest.batches[i], { bytes: bytes.byteLength, sha256: await sha256Hex(bytes) });
    await store.put(keys.activationManifest('r-values', 'dev', 0), JSON.stringify(manifest));
    const rejected: string[] = [];
    expect(await drain(activationFeed(store, src('r-values', 3), { onReject: (_, why) => rejected.push(why) }))).toEqual([2]);
    expect(rejected).toEqual([
      "position 0's hidden state is not finite or its norm exceeds 1000, the bound at cut 2 under its defence",
      "row 0's label 2 is outside the task's [0, 2)",
    ]);
  });

  it('generation batches: a next-token id or IGNORE_INDEX per position, some position labelled, ids within the vocabulary', async () => {
    const perToken = (values: number[]) => Int32Array.from(values);
    const good = batchBytes('r-tokens', 0, { labels: perToken([-100, 5, 6, -100, -100, 9]) });
    const none = batchBytes('r-tokens', 1, { labels: perToken([-100, -100, -100, -100, -100, -100]) });
    const outside = batchBytes('r-tokens', 2, { labels: perToken([-100, 5, 50, -100, -100, 9]) });
    const perRow = batchBytes('r-tokens', 3, { labels: perToken([1, 0]) });
    await writeRound('r-tokens', 4, {
      alter: new Map([
        [0, good],
        [1, none],
        [2, outside],
        [3, perRow],
      ]),
    });
    const manifest = JSON.parse(new TextDecoder().decode(await store.get(keys.activationManifest('r-tokens', 'dev', 0))));
    for (const [i, bytes] of [good, none, outside, perRow].entries())
      Object.assign(manifest.batches[i], { bytes: bytes.byteLength, sha256: await sha256Hex(bytes) });
    await store.put(keys.activationManifest('r-tokens', 'dev', 0), JSON.stringify(manifest));
    const rejected: string[] = [];
    const source = { ...src('r-tokens', 4), labels: { perToken: true, classes: 32 } };
    expect(await drain(activationFeed(store, source, { onReject: (_, why) => rejected.push(why) }))).toEqual([0]);
    expect(rejected).toEqual([
      'no position carries a label: nothing to learn from',
      "position 2's label 50 is outside the task's [0, 32)",
      '2 labels; the task needs one per position',
    ]);
  });
});
