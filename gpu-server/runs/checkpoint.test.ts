import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { Random } from '../../core/random.ts';
import { MemoryStore } from '../../core/storage/memory.ts';
import { keys } from '../../core/storage/keys.ts';
import { tinyModel, TINY } from '../../tests/fixtures.ts';
import { initBackend } from '../backends/tfjs/runtime.ts';
import { Trainer, type TrainBatch } from '../train/trainer.ts';
import { loadCheckpoint, saveCheckpoint, type CheckpointMeta } from './checkpoint.ts';

const spec = {
  lora: { rank: 2, alpha: 4, dropout: 0, targets: ['attn.c_attn'] },
  optimizer: {},
  schedule: { lr: 0.01, warmupSteps: 0, kind: 'constant' as const },
  seed: 3,
};
const trainer = () => new Trainer(tinyModel(), spec, 2);
const meta = (seq: number): CheckpointMeta => ({ seq, round: 0, complete: false, consumed: [`k${seq}`], losses: [seq], finished: [] });

function batch(seed: number): TrainBatch {
  const rng = new Random(seed);
  const rows = 2;
  const seqLen = 5;
  return {
    cut: 2,
    rows,
    seqLen,
    hidden: Float32Array.from({ length: rows * seqLen * TINY.nEmbd }, () => rng.normal()),
    mask: new Int32Array(rows * seqLen).fill(1),
    labels: Int32Array.from([0, 2]),
  };
}

beforeAll(() => initBackend('cpu'));

describe('checkpoints', () => {
  it('restore adapters, optimizer moments and step, GraB updates and the device start, so training continues identically', async () => {
    const store = new MemoryStore();
    const a = trainer();
    for (let i = 0; i < 3; i++) await a.step(batch(i)).result();
    const updates = new Map([['device-1', Float32Array.from([1, 2, 3])]]);
    await saveCheckpoint(store, 'r', a, meta(1), updates, { device: 'device-2', adapters: a.flatAdapters() });
    const b = trainer();
    const loaded = await loadCheckpoint(store, 'r', b);
    expect(loaded?.meta).toEqual(meta(1));
    expect(loaded?.updates).toEqual(updates);
    expect(loaded?.start?.device).toBe('device-2');
    expect(b.opt.step).toBe(3);
    expect(b.flatAdapters()).toEqual(a.flatAdapters());
    // The next step from the restored state is the uninterrupted trainer's next step.
    const [la, lb] = [await a.step(batch(9)).result(), await b.step(batch(9)).result()];
    expect(lb.loss).toBe(la.loss);
    expect(b.flatAdapters()).toEqual(a.flatAdapters());
    a.dispose();
    b.dispose();
  });

  it('load the newest whole checkpoint of the two slots, skipping one cut short mid-write', async () => {
    const store = new MemoryStore();
    const t = trainer();
    await saveCheckpoint(store, 'r', t, meta(1), new Map());
    await saveCheckpoint(store, 'r', t, meta(2), new Map());
    expect((await loadCheckpoint(store, 'r', trainer()))?.meta.seq).toBe(2);
    // Slot 1 (seq 3) half-written: the loader falls back to slot 0 (seq 2) and says why.
    await saveCheckpoint(store, 'r', t, meta(3), new Map());
    const whole = (await store.get(keys.checkpoint('r', 1)))!;
    await store.put(keys.checkpoint('r', 1), whole.subarray(0, whole.length >> 1));
    const log: string[] = [];
    expect((await loadCheckpoint(store, 'r', trainer(), (m) => log.push(m)))?.meta.seq).toBe(2);
    expect(log[0]).toMatch(/^ignoring checkpoint runs\/r\/checkpoints\/state-1.safetensors: /);
    expect(await loadCheckpoint(store, 'other', trainer())).toBeUndefined();
    t.dispose();
  });

  it('restore into a trainer without holding on to a copy of the state each time', async () => {
    const store = new MemoryStore();
    const a = trainer();
    for (let i = 0; i < 2; i++) await a.step(batch(i)).result();
    await saveCheckpoint(store, 'r', a, meta(1), new Map());
    await loadCheckpoint(store, 'r', a);
    const held = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) await loadCheckpoint(store, 'r', a);
    // Before, every restore left its tensors behind: a copy of the adapters and moments a time.
    expect(tf.memory().numTensors).toBe(held);
    a.dispose();
  });

  it('refuse a checkpoint whose adapters do not fit the run', async () => {
    const store = new MemoryStore();
    await saveCheckpoint(store, 'r', trainer(), meta(1), new Map());
    const wider = new Trainer(tinyModel(), { ...spec, lora: { ...spec.lora, rank: 4 } }, 2);
    await expect(loadCheckpoint(store, 'r', wider)).rejects.toThrow(/parameter 0 does not match the run's adapters/);
  });
});
