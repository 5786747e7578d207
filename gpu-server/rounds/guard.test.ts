import { beforeAll, describe, expect, it } from 'vitest';
import { gpt2Config } from '../../core/model/gpt2/config.ts';
import { initModel } from '../../core/model/gpt2/init.ts';
import { Random } from '../../core/random.ts';
import { syntheticSentiment } from '../../core/data/synthetic.ts';
import { GPT2Tokenizer } from '../../core/tokenizer/gpt2.ts';
import { parseRunSpec } from '../runs/spec.ts';
import { initBackend } from '../backends/tfjs/runtime.ts';
import { Trainer, type TrainBatch } from '../train/trainer.ts';
import { DeviceGuard } from './guard.ts';

const D = 32;
const CUT = 2;
const model = initModel(gpt2Config({ nLayer: 3, nEmbd: D, nHead: 4, nPositions: 32 }), { seed: 0 });

/** Rows whose hidden states at the cut carry their label (as the round fixtures' devices upload); `flip` swaps labels. */
function batch(seed: number, rows: number, flip = false): TrainBatch {
  const rng = new Random(seed);
  const seqLen = 6;
  const labels = Int32Array.from({ length: rows }, () => (rng.uniform() < 0.5 ? 0 : 1));
  // The label as a direction with zero mean over the features (the next block's layer norm removes a mean).
  const hidden = Float32Array.from(
    { length: rows * seqLen * D },
    (_, k) => 0.05 * (rng.normal() * 0.5 + (labels[Math.floor(k / (seqLen * D))] ? 0.5 : -0.5) * (k % D < D / 2 ? 1 : -1)),
  );
  return { cut: CUT, rows, seqLen, hidden, mask: new Int32Array(rows * seqLen).fill(1), labels: flip ? labels.map((l) => 1 - l) : labels };
}

const held = batch(1, 64);
function trainer(): Trainer {
  return new Trainer(
    model,
    {
      lora: { rank: 4, alpha: 8, dropout: 0, targets: ['attn.c_attn'] },
      optimizer: { weightDecay: 0, clipNorm: 1 },
      schedule: { lr: 0.01, warmupSteps: 0, kind: 'constant' },
      seed: 1,
    },
    CUT,
  );
}

/** A device's 24 batches of 8 rows; a poisoner's labels are all flipped. */
async function device(t: Trainer, seed: number, flip: boolean): Promise<void> {
  for (let i = 0; i < 24; i++) await t.step(batch(seed * 100 + i, 8, flip)).result();
}

describe('device guard', () => {
  beforeAll(() => initBackend('wasm'));

  it("rolls back a poisoning device's batches (adapters, head and optimizer as before it) and keeps honest ones'", async () => {
    const t = trainer();
    const guard = new DeviceGuard(t, () => t.evalLoss(held), 0.5);
    for (const seed of [2, 3]) {
      const honest = await guard.mark(`honest-${seed}`);
      await device(t, seed, false);
      expect(await guard.settle(honest)).toBeUndefined();
    }
    const before = { adapters: t.flatAdapters(), head: t.exportAdapter().head, step: t.opt.step, loss: await t.evalLoss(held) };
    const poisoner = await guard.mark('poisoner');
    await device(t, 4, true);
    expect(await guard.settle(poisoner)).toMatch(/^rolled back: its batches raised the held-out loss from [\d.]+ to [\d.]+, more than limits.maxLossRise 0.5$/);
    expect(t.flatAdapters()).toEqual(before.adapters);
    expect(t.exportAdapter().head).toEqual(before.head);
    expect(t.opt.step).toBe(before.step);
    expect(await t.evalLoss(held)).toBe(before.loss);
    // The next honest device trains on from there.
    const next = await guard.mark('honest-5');
    await device(t, 5, false);
    expect(await guard.settle(next)).toBeUndefined();
    t.dispose();
  });

  it('undefended, the same poisoning device raises the held-out loss far past the bound', async () => {
    const t = trainer();
    for (const seed of [2, 3]) await device(t, seed, false);
    const before = await t.evalLoss(held);
    await device(t, 4, true);
    expect((await t.evalLoss(held)) - before).toBeGreaterThan(0.5);
    t.dispose();
  });

  it('is off at maxLossRise 0, in interleaved order and without held-out rows', () => {
    const t = trainer();
    const rows = syntheticSentiment(8, 1).map((r) => ({ text: r.text, label: Number(r.label) }));
    const spec = (limits: object, training: object = {}) =>
      parseRunSpec({ model: 'm', task: { labels: ['0', '1'] }, devices: [{ id: 'a', url: 'http://a' }], limits, training });
    const tokenizer = new GPT2Tokenizer();
    expect(DeviceGuard.of(t, tokenizer, spec({}), rows)).toBeInstanceOf(DeviceGuard);
    expect(DeviceGuard.of(t, tokenizer, spec({ maxLossRise: 0 }), rows)).toBeUndefined();
    expect(DeviceGuard.of(t, tokenizer, spec({}, { batchOrder: 'interleaved' }), rows)).toBeUndefined();
    expect(DeviceGuard.of(t, tokenizer, spec({}), [])).toBeUndefined();
    t.dispose();
  });
});
