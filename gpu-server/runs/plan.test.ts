import { describe, expect, it } from 'vitest';
import { putJson } from '../../core/storage/json.ts';
import { keys } from '../../core/storage/keys.ts';
import { MemoryStore } from '../../core/storage/memory.ts';
import type { ShardSummary } from '../../core/wire/device-client.ts';
import { planRound, type DeviceView } from './plan.ts';
import { parseRunSpec } from './spec.ts';

const sha = (c: string) => c.repeat(64);
const shard = (name: string, rows: number, etag = 'e1', labels = ['0', '1']): ShardSummary => ({ name, rows, labels, etag, task: 'classification' });
const spec = parseRunSpec({
  model: 'm',
  task: { labels: ['0', '1'] },
  devices: ['a', 'b', 'c'].map((id) => ({ id, url: `http://${id}` })),
  ordering: { kind: 'fixed', order: ['c', 'b', 'a'] },
  training: { batchSize: 4 },
});
const view = (id: string, shards: ShardSummary[] | Error, approved = true): DeviceView => ({
  id,
  cut: 2,
  modelSha256: sha('1'),
  shards,
  policy: { minCut: 2, approvals: approved ? [{ sha256: sha('1'), model: 'm', cut: 2 }] : [], defence: { mechanism: 'none' } },
});

describe('round planner', () => {
  it('plans the devices that can take part, in the given order, and says why the others cannot', async () => {
    const store = new MemoryStore();
    const views = [
      view('a', [shard('s1', 10), shard('other', 5, 'e', ['x', 'y'])]),
      view('b', new Error('connect ECONNREFUSED')),
      view('c', [shard('s1', 3)], false),
    ];
    const plan = await planRound(store, 'r', spec, 0, views, 0, new Map());
    expect(plan.order).toEqual(['a']);
    // Only the shard with the task's labels is used: 10 rows in batches of 4.
    expect(plan.devices.a).toMatchObject({ shards: ['s1'], rows: 10, batches: 3, sourceRound: 0, cut: 2 });
    expect(plan.skipped).toEqual({
      b: 'unreachable: connect ECONNREFUSED',
      c: `refused by its owner: model segment ${sha('1')} is not approved by this device's owner (PUT /approvals/${sha('1')})`,
    });
    const none = await planRound(store, 'r', spec, 0, [view('a', [shard('other', 5, 'e', ['x', 'y'])])], 0, new Map());
    expect(none.skipped.a).toBe('holds no shard with the task\'s labels ["0","1"]');
  });

  it("reuses an earlier round's activations only while shards, segment and batching are the same and they are stored", async () => {
    const store = new MemoryStore();
    const round0 = await planRound(store, 'r', spec, 0, [view('a', [shard('s1', 8)]), view('c', [shard('s1', 8)])], 0, new Map());
    await putJson(store, keys.plan('r', 0), round0);
    await store.put(keys.activationManifest('r', 'a', 0), '{}');
    // a: same shard, activations stored: reused. c: same shard, but its round-0 activations never completed.
    const round1 = await planRound(store, 'r', spec, 1, [view('a', [shard('s1', 8)]), view('c', [shard('s1', 8)])], 0, new Map());
    expect([round1.devices.a.sourceRound, round1.devices.c.sourceRound]).toEqual([0, 1]);
    expect(round1.order).toEqual(['c', 'a']);
    // A changed shard (new etag) or another padding token makes new activations.
    expect((await planRound(store, 'r', spec, 1, [view('a', [shard('s1', 8, 'e2')])], 0, new Map())).devices.a.sourceRound).toBe(1);
    expect((await planRound(store, 'r', spec, 1, [view('a', [shard('s1', 8)])], 50256, new Map())).devices.a.sourceRound).toBe(1);
    // So do other start and end tokens: every row's tokens would sit elsewhere.
    const tokenized = (bos: number): DeviceView => ({
      ...view('a', [shard('s1', 8)]),
      tokenizer: { sha256: sha('t'), bos, eos: 2 },
      policy: {
        minCut: 2,
        approvals: [{ sha256: sha('1'), model: 'm', cut: 2, tokenizer: sha('t'), specialTokens: { bos, eos: 2 } }],
        defence: { mechanism: 'none' },
      },
    });
    await putJson(store, keys.plan('rt', 0), await planRound(store, 'rt', spec, 0, [tokenized(1)], 0, new Map()));
    await store.put(keys.activationManifest('rt', 'a', 0), '{}');
    expect((await planRound(store, 'rt', spec, 1, [tokenized(1)], 0, new Map())).devices.a.sourceRound).toBe(0);
    expect((await planRound(store, 'rt', spec, 1, [tokenized(3)], 0, new Map())).devices.a.sourceRound).toBe(1);
  });

  it("leaves out a device whose claimed rows pass the run's cap or its owner's declared count, before any URL is made", async () => {
    const capped = parseRunSpec({
      ...spec,
      devices: [
        { id: 'a', url: 'http://a' },
        { id: 'b', url: 'http://b', rows: 100 },
        { id: 'c', url: 'http://c' },
      ],
      ordering: { kind: 'random-reshuffle' },
      limits: { maxRowsPerDevice: 1000 },
    });
    const plan = await planRound(
      new MemoryStore(),
      'r',
      capped,
      0,
      [view('a', [shard('s1', 400_000)]), view('b', [shard('s1', 101)]), view('c', [shard('s1', 1000)])],
      0,
      new Map(),
    );
    expect(plan.order).toEqual(['c']);
    expect(plan.skipped).toEqual({
      a: 'claims 400000 rows, more than the run allows a device (limits.maxRowsPerDevice 1000)',
      b: 'claims 101 rows, more than its owner declared (devices[].rows 100)',
    });
    // The default cap: 4M rows (4 GB of presigned URLs, before the cap) are refused as well.
    const plain = await planRound(new MemoryStore(), 'r', spec, 0, [view('a', [shard('s1', 4_000_000)])], 0, new Map());
    expect(plain.skipped.a).toBe('claims 4000000 rows, more than the run allows a device (limits.maxRowsPerDevice 20000)');
  });
});
