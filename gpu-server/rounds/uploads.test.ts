import { describe, expect, it } from 'vitest';
import { keys } from '../../core/storage/keys.ts';
import { MemoryStore } from '../../core/storage/memory.ts';
import type { RoundPlan } from '../runs/plan.ts';
import type { RoundProgress } from '../runs/types.ts';
import { watchUploads } from './uploads.ts';

const planned = (batches: number, sourceRound: number) => ({
  cut: 1,
  modelSha256: 'm',
  shards: ['s'],
  rows: batches * 4,
  batches,
  fingerprint: 'f',
  sourceRound,
});
const plan: RoundPlan = {
  round: 1,
  order: ['fresh', 'cached', 'liar'],
  devices: { fresh: planned(3, 1), cached: planned(5, 0), liar: planned(2, 1) },
  skipped: {},
  createdAt: '',
};
const waiting = () => ({ cut: 1, state: 'waiting' as const, reused: false, batches: 0, trained: 0, bytes: 0 });
const progress = (): RoundProgress => ({
  round: 1,
  phase: 'training',
  order: plan.order,
  batchesTotal: 10,
  batchesTrained: 0,
  losses: [],
  devices: { fresh: waiting(), cached: waiting(), liar: waiting() },
  rejected: [],
});
const until = async (ok: () => boolean) => {
  for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
};

describe("devices' uploads while the round trains", () => {
  it("counts each computing device's batch objects as storage lists them, capped at its plan; a cached device has all", async () => {
    const store = new MemoryStore();
    const p = progress();
    const watch = watchUploads(store, 'run', plan, p, 10);
    expect(p.devices.cached!.uploaded).toBe(5);
    const put = (id: string, b: number) => store.put(keys.activationBatch('run', id, 1, b), new Uint8Array(4));
    await put('fresh', 0);
    await until(() => p.devices.fresh!.uploaded === 1);
    expect(p.devices.fresh!.uploaded).toBe(1);
    // The manifest is not a batch; a device uploading more objects than planned moves no count past its plan.
    await store.put(keys.activationManifest('run', 'fresh', 1), new Uint8Array(2));
    for (let b = 0; b < 6; b++) await put('liar', b);
    await put('fresh', 1);
    await until(() => p.devices.fresh!.uploaded === 2 && p.devices.liar!.uploaded === 2);
    expect([p.devices.fresh!.uploaded, p.devices.liar!.uploaded]).toEqual([2, 2]);
    const t0 = performance.now();
    await watch.stop();
    expect(performance.now() - t0).toBeLessThan(100);
  });

  it('stops listing by itself once every computing device has uploaded its plan', async () => {
    const store = new MemoryStore();
    for (let b = 0; b < 3; b++) await store.put(keys.activationBatch('run', 'fresh', 1, b), new Uint8Array(1));
    for (let b = 0; b < 2; b++) await store.put(keys.activationBatch('run', 'liar', 1, b), new Uint8Array(1));
    const p = progress();
    const watch = watchUploads(store, 'run', plan, p, 10);
    await watch.stop();
    expect([p.devices.fresh!.uploaded, p.devices.liar!.uploaded]).toEqual([3, 2]);
    let lists = 0;
    const counting = Object.assign(Object.create(store), { list: (...a: Parameters<MemoryStore['list']>) => (lists++, store.list(...a)) });
    const done = watchUploads(counting, 'run', plan, progress(), 10);
    await new Promise((r) => setTimeout(r, 60));
    await done.stop();
    expect(lists).toBe(2); // one listing each, then nothing left to watch
  });
});
