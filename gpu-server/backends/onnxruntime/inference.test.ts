/**
 * Evaluation and generation with the blocks on onnxruntime give TensorFlow.js's numbers and tokens (its cpu backend
 * as the reference, itself pinned to the float64 reference in gpu-server/backends/tfjs/llama.test.ts), while TensorFlow.js
 * holds no block.
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { IGNORE_INDEX } from '../../../core/data/generation.ts';
import { llamaReferenceHidden, llamaReferenceLogits } from '../../../core/model/llama/reference.ts';
import { Random } from '../../../core/random.ts';
import { initBackend } from '../tfjs/runtime.ts';
import { Trainer, type TrainSpec } from '../../train/trainer.ts';
import { mergeAdapter } from '../../../core/peft/adapter.ts';
import { TINY_LLAMA, tinyLlama } from '../../../tests/fixtures.ts';

const config = TINY_LLAMA;
const llama = tinyLlama();
const spec: TrainSpec = {
  lora: { rank: 4, alpha: 8, dropout: 0.1, targets: ['self_attn.q_proj', 'self_attn.v_proj', 'mlp.down_proj'] },
  optimizer: {},
  schedule: { lr: 0.01, warmupSteps: 0, kind: 'constant' },
  seed: 5,
};
const ORT = { provider: 'cpu' as const, threads: 1 };

/** A TF.js trainer and an onnxruntime one with the same random adapters (B non-zero, so that they matter). */
function pair() {
  const tfjs = new Trainer(llama, spec, 1, { task: 'causal-lm' });
  const rng = new Random(9);
  const w = tfjs.exportAdapter();
  const adapter = { ...w, b: new Map([...w.b].map(([k, v]) => [k, v.map(() => rng.normal())])) };
  tfjs.loadAdapter(adapter);
  const ort = new Trainer(llama, spec, 1, { task: 'causal-lm', blocks: ORT });
  ort.loadAdapter(adapter);
  return { tfjs, ort, adapter };
}

describe('evaluation and generation on onnxruntime (Llama)', () => {
  beforeAll(() => initBackend('cpu'));

  it('held-out loss from token ids (left padding, frozen block 0, adapted blocks) equals TF.js within 1e-4', async () => {
    const { tfjs, ort } = pair();
    const [B, T] = [4, 10];
    const rng = new Random(3);
    const ids = Int32Array.from({ length: B * T }, () => 3 + Math.floor(rng.uniform() * 90));
    const mask = Int32Array.from({ length: B * T }, (_, i) => (i % T < (i < T ? 3 : 0) ? 0 : 1));
    const labels = Int32Array.from({ length: B * T }, (_, i) => (i % T < 5 || i % T === T - 1 ? IGNORE_INDEX : ids[i + 1]!));
    const want = await tfjs.tokenLoss(ids, mask, labels, B, T);
    const got = await ort.tokenLoss(ids, mask, labels, B, T);
    expect(Math.abs(got - want) / want).toBeLessThan(1e-4);
    // The adapters are applied: the base model's loss differs.
    const base = new Trainer(llama, spec, 1, { task: 'causal-lm', blocks: ORT });
    expect(Math.abs((await base.tokenLoss(ids, mask, labels, B, T)) - want)).toBeGreaterThan(1e-3);
    for (const t of [tfjs, ort, base]) t.dispose();
  });

  it('greedy generation with the KV cache gives the tokens of recomputing everything, of TF.js, and of the float64 reference of the merged model', async () => {
    const { tfjs, ort, adapter } = pair();
    const prompt = [1, 17, 42, 5, 63];
    const options = { maxNewTokens: 12, stop: [] };
    const cached = await ort.generate(prompt, options);
    expect(await ort.generate(prompt, { ...options, cache: false })).toEqual(cached);
    expect(await tfjs.generate(prompt, options)).toEqual(cached);
    const merged = mergeAdapter(llama, adapter);
    const tokens = [...prompt];
    for (let s = 0; s < 12; s++) {
      const T = tokens.length;
      const logits = llamaReferenceLogits(
        merged,
        llamaReferenceHidden(
          merged,
          tokens,
          tokens.map(() => 1),
          1,
          T,
        ),
        T,
      ).subarray((T - 1) * config.vocabSize);
      tokens.push(logits.indexOf(Math.max(...logits)));
    }
    expect(cached).toEqual(tokens.slice(prompt.length));
    expect(new Set(cached).size).toBeGreaterThan(1); // not a degenerate repeat
    tfjs.dispose();
    ort.dispose();
  });

  it("sampled generation is seeded and the same as TF.js's, with and without the cache; an end token stops it", async () => {
    const { tfjs, ort } = pair();
    const options = { maxNewTokens: 16, temperature: 1.5, topK: 20, seed: 7, stop: [] };
    const a = await ort.generate([1, 30, 31], options);
    expect(await ort.generate([1, 30, 31], { ...options, cache: false })).toEqual(a);
    expect(await tfjs.generate([1, 30, 31], options)).toEqual(a);
    expect(await ort.generate([1, 30, 31], { ...options, seed: 8 })).not.toEqual(a);
    const stopAt = a[3]!;
    expect(await ort.generate([1, 30, 31], { ...options, stop: [stopAt] })).toEqual(a.slice(0, a.indexOf(stopAt) + 1));
    tfjs.dispose();
    ort.dispose();
  });

  it("TF.js holds no block when they run on onnxruntime: less than one block's weights in its memory", () => {
    const before = tf.memory().numBytes;
    const ort = new Trainer(llama, spec, 1, { task: 'causal-lm', blocks: ORT });
    const onOrt = tf.memory().numBytes - before;
    const tfjs = new Trainer(llama, spec, 1, { task: 'causal-lm' });
    const onTf = tf.memory().numBytes - before - onOrt;
    const oneBlock = 4 * (2 * config.nEmbd * (config.nHead + config.nKvHead) * config.headDim + 3 * config.nEmbd * config.nInner);
    expect(onTf - onOrt).toBeGreaterThanOrEqual(config.nLayer * oneBlock);
    expect(onOrt).toBeLessThan(oneBlock);
    ort.dispose();
    tfjs.dispose();
  });
});
