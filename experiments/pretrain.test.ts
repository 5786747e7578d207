import { beforeAll, describe, expect, it } from 'vitest';
import { syntheticSentiment } from '../core/data/synthetic.ts';
import { initBackend } from '../gpu-server/backends/tfjs/runtime.ts';
import { GPT2Tokenizer } from '../core/tokenizer/gpt2.ts';
import { initModel } from '../core/model/gpt2/init.ts';
import { pretrain } from './pretrain.ts';

describe('pretraining a small base model', () => {
  beforeAll(() => initBackend('wasm'));

  it('lowers the held-out language-modelling loss, and keeps the rows of tokens it never saw', () => {
    const texts = syntheticSentiment(400, 1).map((r) => r.text);
    const { model, report } = pretrain(texts, {
      config: { nLayer: 2, nEmbd: 32, nHead: 2 },
      seqLen: 32,
      batchSize: 8,
      steps: 40,
      lr: 5e-3,
      vocab: 64,
      seed: 3,
      holdout: 0.1,
    });
    expect(report.validationLoss.after).toBeLessThan(report.validationLoss.before - 0.3);
    expect(report.trainLoss).toHaveLength(40);
    expect(model.config.vocabSize).toBe(50257);
    const d = 32;
    const base = initModel(model.config, { seed: 3 }).params.get('wte.weight')!;
    const wte = model.params.get('wte.weight')!;
    const row = (w: Float32Array, id: number) => Array.from(w.subarray(id * d, (id + 1) * d));
    const seen = new GPT2Tokenizer().encode(' great')[0];
    const unseen = new GPT2Tokenizer().encode(' zebra')[0];
    expect(row(wte, seen)).not.toEqual(row(base, seen));
    expect(row(wte, unseen)).toEqual(row(base, unseen));
    expect(model.params.get('h.1.mlp.c_fc.weight')).not.toEqual(initModel(model.config, { seed: 3 }).params.get('h.1.mlp.c_fc.weight'));
  });

  it('says when the corpus is too small for a batch', () => {
    expect(() =>
      pretrain(['tiny text'], { config: { nLayer: 1, nEmbd: 16, nHead: 2 }, seqLen: 32, batchSize: 8, steps: 1, lr: 1e-3, vocab: 16, seed: 0 }),
    ).toThrow(/training sequences of 32 tokens; a batch needs 8/);
  });
});
