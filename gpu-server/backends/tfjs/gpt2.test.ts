import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { referenceClassify, referenceHidden, referenceLmLogits } from '../../../core/model/gpt2/reference.ts';
import { batch, leftPadded, maxAbsDiff, realRows, tinyModel, TINY } from '../../../tests/fixtures.ts';
import { initBackend } from './runtime.ts';
import { TfGPT2 } from './gpt2.ts';
import { TrainableGPT2 } from './gpt2-trainable.ts';
import { lmLoss } from '../../train/lm.ts';
import { LoraAdapters } from '../../train/lora.ts';

const model = tinyModel();
const right = batch([9, 12, 3, 1], 12, 'right');
const left = leftPadded(right);
const ids = (b: typeof right) => tf.tensor2d(b.ids, [b.B, b.T], 'int32');
const mask = (b: typeof right) => tf.tensor2d(b.mask, [b.B, b.T], 'int32');

describe('TF.js GPT-2 forward (wasm backend) against the float64 reference', () => {
  let net: TfGPT2;
  beforeAll(async () => {
    await initBackend('wasm');
    net = new TfGPT2(model);
  });

  it.each([1, 2, 4])('hidden states at cut %i equal the reference within 1e-5, for every position', (cut) => {
    for (const b of [right, left]) {
      const got = net.hidden(ids(b), mask(b), cut).dataSync();
      expect(maxAbsDiff(got, referenceHidden(model, b.ids, b.mask, b.B, b.T, cut))).toBeLessThan(1e-5);
    }
  });

  it('a suffix from cut k on the reference hidden states gives the full model classification', () => {
    const want = referenceClassify(model, right.ids, right.mask, right.B, right.T);
    const atCut = tf.tensor3d(Float32Array.from(referenceHidden(model, right.ids, right.mask, right.B, right.T, 2)), [right.B, right.T, TINY.nEmbd]);
    expect(maxAbsDiff(net.classifyFromCut(atCut, mask(right), 2).dataSync(), want)).toBeLessThan(1e-5);
  });

  it('the classification head pools the last real token for left- and right-padded batches alike', () => {
    const logits = (b: typeof right) => net.classify(net.hidden(ids(b), mask(b)), mask(b)).dataSync();
    const r = logits(right);
    expect(maxAbsDiff(r, referenceClassify(model, right.ids, right.mask, right.B, right.T))).toBeLessThan(1e-5);
    expect(maxAbsDiff(r, logits(left))).toBeLessThan(1e-5);
    // Pooling any other position would change the logits: compare against pooling the last padded slot.
    const fullMask = tf.onesLike(mask(right));
    expect(maxAbsDiff(r, net.classify(net.hidden(ids(right), mask(right)), fullMask as tf.Tensor2D).dataSync())).toBeGreaterThan(1e-3);
  });

  it('a server-side model holds only the blocks from its cut, and refuses to run the ones below', () => {
    const server = new TfGPT2(model, { firstBlock: 2 });
    const atCut = tf.tensor3d(Float32Array.from(referenceHidden(model, left.ids, left.mask, left.B, left.T, 2)), [left.B, left.T, TINY.nEmbd]);
    const want = referenceClassify(model, left.ids, left.mask, left.B, left.T);
    expect(maxAbsDiff(server.classifyFromCut(atCut, mask(left), 2).dataSync(), want)).toBeLessThan(1e-5);
    expect(() => server.classifyFromCut(atCut, mask(left), 1)).toThrow(/block 1 is below this model's first block/);
    server.dispose();
  });

  it('refuses a sequence longer than n_positions, saying so', () => {
    const long = tf.zeros([1, TINY.nPositions + 1], 'int32') as tf.Tensor2D;
    expect(() => net.hidden(long, long)).toThrow(/sequence length 33 exceeds the model's n_positions \(32\)/);
  });

  it('a forward pass leaves no tensors behind but its result', () => {
    const [i, m] = [ids(right), mask(right)];
    const before = tf.memory().numTensors;
    const hidden = net.hidden(i, m);
    expect(tf.memory().numTensors).toBe(before + 1);
    tf.dispose(net.classify(hidden, m));
    tf.dispose(net.classifyFromCut(hidden, m, 3));
    tf.dispose(hidden);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('the tied LM head equals the reference', () => {
    const h = net.hidden(ids(right), mask(right));
    const got = net.lmLogits(h.reshape([-1, TINY.nEmbd])).dataSync();
    const want = referenceLmLogits(model, right.ids, right.mask, right.B, right.T);
    expect(maxAbsDiff(realRows(got, right.mask, TINY.vocabSize), realRows(want, right.mask, TINY.vocabSize))).toBeLessThan(1e-4);
  });

  it('trainable: gradients of the language-modelling loss equal finite differences of the float64 reference', () => {
    const trainable = new TrainableGPT2(model);
    const b = right;
    const vars = trainable.variables();
    const { value, grads } = tf.variableGrads(() => lmLoss(trainable, ids(b), mask(b)), [...vars.values()]);
    const referenceLoss = (m: typeof model) => {
      const V = TINY.vocabSize;
      const logits = referenceLmLogits(m, b.ids, b.mask, b.B, b.T);
      let sum = 0;
      let n = 0;
      for (let r = 0; r < b.B; r++) {
        for (let t = 0; t + 1 < b.T; t++) {
          if (!b.mask[r * b.T + t + 1]) continue;
          const row = logits.subarray((r * b.T + t) * V, (r * b.T + t + 1) * V);
          const max = Math.max(...row);
          sum += Math.log(row.reduce((a, x) => a + Math.exp(x - max), 0)) + max - row[b.ids[r * b.T + t + 1]];
          n++;
        }
      }
      return sum / n;
    };
    expect(value.dataSync()[0]).toBeCloseTo(referenceLoss(model), 4);
    const probe = (name: string, index: number) => {
      const v = vars.get(name)!;
      const shift = (eps: number) => {
        const params = new Map(model.params);
        const p = Float32Array.from(params.get(name)!);
        p[index] += eps;
        params.set(name, p);
        return referenceLoss({ config: model.config, params });
      };
      const numeric = (shift(1e-3) - shift(-1e-3)) / 2e-3;
      const analytic = grads[v.name].dataSync()[index];
      expect(Math.abs(analytic - numeric), `${name}[${index}]: ${analytic} vs ${numeric}`).toBeLessThan(2e-3 * Math.max(1, Math.abs(numeric)));
    };
    // A token row used in the batch (embedding and tied head), a position row, a linear weight and bias, a norm.
    probe('wte.weight', right.ids[0] * TINY.nEmbd + 3);
    probe('wpe.weight', 2 * TINY.nEmbd + 1);
    probe('h.1.attn.c_attn.weight', 40);
    probe('h.3.mlp.c_fc.bias', 7);
    probe('h.0.ln_2.weight', 5);
    probe('ln_f.bias', 9);
    expect(vars.size).toBe(model.params.size - 1); // every weight but the classification head
    trainable.dispose();
  });
});

describe('trainForward: blocks with a hand-written backward', () => {
  it('gives the value and gradients of autodiff through blocksForward (1e-4), with padding, dropout and all four linears adapted', async () => {
    await initBackend('wasm');
    const c = model.config;
    const net = new TfGPT2(model, { firstBlock: 1 });
    const lora = new LoraAdapters(c, { rank: 2, alpha: 4, dropout: 0.2, targets: ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'], from: 1 }, 3);
    lora.b.forEach((b, k) => b.assign(tf.randomNormal(b.shape, 0, 0.3, 'float32', k.length)));
    const [B, T] = [left.B, left.T];
    const hidden = tf.randomNormal([B, T, c.nEmbd], 0, 1, 'float32', 7) as tf.Tensor3D;
    const m = mask(left);
    const weights = tf.randomNormal([B, T, c.nEmbd], 0, 1, 'float32', 8);
    const run = (forward: (h: tf.Tensor3D) => tf.Tensor3D) => {
      const loss = (h: tf.Tensor) => tf.sum(tf.mul(forward(h as tf.Tensor3D), weights)) as tf.Scalar;
      const { value, grads } = tf.variableGrads(() => loss(hidden), lora.variables());
      const dh = tf.grad(loss)(hidden);
      return { value: value.dataSync()[0]!, grads: lora.variables().map((v) => grads[v.name]!.dataSync()), dh: dh.dataSync() };
    };
    const plain = run((h) => net.blocksForward(h, m, 1, undefined, lora.adapters(true, 5)));
    const written = run((h) => net.trainForward(h, m, 1, lora.adapters(true, 5), { inputGradient: true }));
    expect(Math.abs(written.value - plain.value)).toBeLessThan(1e-4 * Math.abs(plain.value));
    const rel = (a: ArrayLike<number>, b: ArrayLike<number>) => maxAbsDiff(a, b) / Math.max(...Array.from(b, Math.abs));
    expect(rel(written.dh, plain.dh)).toBeLessThan(1e-4);
    written.grads.forEach((g, i) => expect(rel(g, plain.grads[i]!)).toBeLessThan(1e-4));
    expect(Math.max(...Array.from(plain.grads.at(-1)!, Math.abs))).toBeGreaterThan(0);
    net.dispose();
    lora.dispose();
  });
});
