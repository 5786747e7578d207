import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { llamaConfig } from '../../../core/model/llama/config.ts';
import { initLlama } from '../../../core/model/llama/init.ts';
import { llamaReferenceHidden, llamaReferenceLogits } from '../../../core/model/llama/reference.ts';
import type { LlamaModel } from '../../../core/model/llama/weights.ts';
import { adapterFiles, mergeAdapter, parseAdapter, type AdapterWeights } from '../../../core/peft/adapter.ts';
import { Random } from '../../../core/random.ts';
import { batch, leftPadded, maxAbsDiff, TINY_LLAMA } from '../../../tests/fixtures.ts';
import { initBackend } from './runtime.ts';
import { LoraAdapters } from '../../train/lora.ts';
import { TfLlama } from './llama.ts';
import { IGNORE_INDEX } from '../../../core/data/generation.ts';
import { chunkedLmLoss } from './ops.ts';

const V = 97;
const config = llamaConfig({
  ...TINY_LLAMA,
  ropeTheta: 10000,
  ropeScaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 16 },
  tieWordEmbeddings: false,
});
const model = initLlama(config, { seed: 3, normNoise: 0.2 });
for (const [name, p] of model.params) if (/(q_proj|k_proj|embed_tokens|lm_head)/.test(name)) p.forEach((v, i) => (p[i] = v * 10));
const right = batch([9, 12, 3], 12, 'right', 5, V);
const left = leftPadded(right);
const t2 = (x: Int32Array, b: { B: number; T: number }) => tf.tensor2d(x, [b.B, b.T], 'int32');
const TARGETS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.down_proj'];

/** Labels as a causal-LM batch carries them: the next token, on the second half of each row only (the "completion"). */
function completionLabels(b: typeof right): Int32Array {
  const labels = new Int32Array(b.B * b.T).fill(IGNORE_INDEX);
  for (let r = 0; r < b.B; r++) {
    const real = [...Array(b.T).keys()].filter((t) => b.mask[r * b.T + t]);
    for (let j = Math.floor(real.length / 2); j + 1 < real.length; j++) labels[r * b.T + real[j]!] = b.ids[r * b.T + real[j + 1]!]!;
  }
  return labels;
}

function randomAdapter(lora: LoraAdapters, seed: number): AdapterWeights {
  const rng = new Random(seed);
  const fill = (m: Map<string, tf.Variable>) => new Map([...m].map(([k, v]) => [k, Float32Array.from({ length: v.size }, () => rng.normal() * 0.2)]));
  return { rank: lora.spec.rank, alpha: lora.spec.alpha, dropout: 0, targets: lora.spec.targets, layers: [1, 2], a: fill(lora.a), b: fill(lora.b) };
}

function loadInto(lora: LoraAdapters, w: AdapterWeights) {
  for (const [k, v] of lora.a) v.assign(tf.tensor2d(w.a.get(k)!, v.shape));
  for (const [k, v] of lora.b) v.assign(tf.tensor2d(w.b.get(k)!, v.shape));
}

/** float64 mean next-token loss of a model over the labelled positions. */
function referenceLoss(m: LlamaModel, b: typeof right, labels: Int32Array): number {
  const logits = llamaReferenceLogits(m, llamaReferenceHidden(m, b.ids, b.mask, b.B, b.T), b.B * b.T);
  let sum = 0;
  let n = 0;
  labels.forEach((label, r) => {
    if (label === IGNORE_INDEX) return;
    const row = logits.subarray(r * V, (r + 1) * V);
    const max = Math.max(...row);
    sum += Math.log(row.reduce((a, x) => a + Math.exp(x - max), 0)) + max - row[label]!;
    n++;
  });
  return sum / n;
}

describe('TF.js Llama (wasm backend) against the float64 reference', () => {
  let net: TfLlama;
  beforeAll(async () => {
    await initBackend('wasm');
    net = new TfLlama(model);
  });

  it.each([1, 3])('hidden states at cut %i equal the reference (1e-4), left- and right-padded', (cut) => {
    for (const b of [right, left])
      expect(maxAbsDiff(net.hidden(t2(b.ids, b), t2(b.mask, b), cut).dataSync(), llamaReferenceHidden(model, b.ids, b.mask, b.B, b.T, cut))).toBeLessThan(1e-4);
  });

  it("LoRA on every attention projection: the loss of a batch from the cut equals the merged model's float64 loss, and the checkpointed backward's gradients equal plain autodiff", () => {
    const lora = new LoraAdapters(config, { rank: 4, alpha: 8, dropout: 0, targets: TARGETS, from: 1 }, 1);
    const w = randomAdapter(lora, 2);
    loadInto(lora, w);
    const labels = completionLabels(right);
    const atCut = tf.tensor3d(Float32Array.from(llamaReferenceHidden(model, right.ids, right.mask, right.B, right.T, 1)), [right.B, right.T, config.nEmbd]);
    const mask = t2(right.mask, right);
    const checkpointed = net.lossAndGradients(atCut, mask, 1, lora.adapters(false), lora.variables(), (final) => net.lmLoss(final, labels));
    const plain = tf.variableGrads(() => net.lmLoss(net.blocksForward(atCut, mask, 1, undefined, lora.adapters(false)), labels), lora.variables());
    const want = referenceLoss(mergeAdapter(model, w), right, labels);
    expect(Math.abs(checkpointed.loss.dataSync()[0]! - want) / want).toBeLessThan(1e-5);
    expect(Math.abs(plain.value.dataSync()[0]! - want) / want).toBeLessThan(1e-5);
    for (const [name, g] of Object.entries(plain.grads)) {
      const got = checkpointed.grads[name]!.dataSync();
      const scale = Math.max(...Array.from(g.dataSync(), Math.abs));
      expect(scale, name).toBeGreaterThan(0);
      expect(maxAbsDiff(got, g.dataSync()) / scale, name).toBeLessThan(1e-4);
    }
    lora.dispose();
  });

  it('the chunked LM loss equals the whole-vocabulary softmax cross-entropy, value and gradient, for any chunk size', () => {
    const rng = new Random(9);
    const N = 37;
    const h = tf.tensor2d(
      Float32Array.from({ length: N * 32 }, () => rng.normal()),
      [N, 32],
    );
    const w = tf.tensor2d(
      Float32Array.from({ length: V * 32 }, () => rng.normal() * 0.3),
      [V, 32],
    );
    const labels = Int32Array.from({ length: N }, () => Math.floor(rng.uniform() * V));
    const whole = tf.valueAndGrad(
      (x: tf.Tensor) => tf.losses.softmaxCrossEntropy(tf.oneHot(tf.tensor1d(labels, 'int32'), V), tf.matMul(x as tf.Tensor2D, w, false, true)) as tf.Scalar,
    )(h);
    const wT = tf.transpose(w); // the head outlives the step, as the model's does
    for (const chunk of [1, 8, 64]) {
      const got = tf.valueAndGrad((x: tf.Tensor) => chunkedLmLoss(x as tf.Tensor2D, wT, w, labels, chunk))(h);
      expect(Math.abs(got.value.dataSync()[0]! - whole.value.dataSync()[0]!)).toBeLessThan(1e-5);
      expect(maxAbsDiff(got.grad.dataSync(), whole.grad.dataSync())).toBeLessThan(1e-6);
    }
  });

  it("greedy generation with the KV cache gives the tokens of recomputing the whole sequence, and of the float64 reference's argmax", async () => {
    const lora = new LoraAdapters(config, { rank: 4, alpha: 8, dropout: 0, targets: TARGETS, from: 1 }, 1);
    const w = randomAdapter(lora, 4);
    loadInto(lora, w);
    const prompt = [1, 17, 42, 5, 63];
    const options = { maxNewTokens: 12, adapters: lora.adapters(false), stop: [] };
    const cached = await net.generate(prompt, options);
    expect(await net.generate(prompt, { ...options, cache: false })).toEqual(cached);
    const merged = mergeAdapter(model, w);
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
      ).subarray((T - 1) * V);
      tokens.push(logits.indexOf(Math.max(...logits)));
    }
    expect(cached).toEqual(tokens.slice(prompt.length));
    expect(new Set(cached).size).toBeGreaterThan(1); // not a degenerate repeat
    lora.dispose();
  });

  it('sampled generation is seeded, the same with and without the cache, and stops at an end token', async () => {
    const options = { maxNewTokens: 16, temperature: 1.5, topK: 20, seed: 7, stop: [] };
    const a = await net.generate([1, 30, 31], options);
    expect(await net.generate([1, 30, 31], { ...options, cache: false })).toEqual(a);
    expect(await net.generate([1, 30, 31], { ...options, seed: 8 })).not.toEqual(a);
    const stopAt = a[3]!;
    const stopped = await net.generate([1, 30, 31], { ...options, stop: [stopAt] });
    expect(stopped).toEqual(a.slice(0, a.indexOf(stopAt) + 1));
    await expect(net.generate([1], { maxNewTokens: 64 })).rejects.toThrow(/exceeds the model's max_position_embeddings \(64\)/);
  });
});

describe('PEFT adapters for LlamaForCausalLM', () => {
  it("writes PEFT's keys and config (CAUSAL_LM, fan_in_fan_out false) and reads them back; the merged weights give the adapted model", async () => {
    await initBackend('wasm');
    const lora = new LoraAdapters(config, { rank: 4, alpha: 8, dropout: 0.05, targets: ['self_attn.q_proj', 'self_attn.v_proj'], from: 1 }, 1);
    const w = { ...randomAdapter(lora, 6), dropout: 0.05 };
    const files = adapterFiles(w, config, 'tiny-llama');
    const peft = JSON.parse(new TextDecoder().decode(files['adapter_config.json']));
    expect(peft).toMatchObject({
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      fan_in_fan_out: false,
      target_modules: ['q_proj', 'v_proj'],
      layers_pattern: 'layers',
      layers_to_transform: [1, 2],
      r: 4,
      lora_alpha: 8,
    });
    const back = parseAdapter(files, config);
    expect(back.targets).toEqual(['self_attn.q_proj', 'self_attn.v_proj']);
    for (const [k, a] of w.a) expect(back.a.get(k)).toEqual(a);
    expect([...back.a.keys()]).toContain('layers.2.self_attn.v_proj');
    // Merged weights (nn.Linear [out, in]) equal the adapter applied at run time.
    loadInto(lora, w);
    const net = new TfLlama(model);
    const mergedNet = new TfLlama(mergeAdapter(model, back));
    const withAdapter = tf.tidy(() => net.blocksForward(net.embed(t2(right.ids, right)), t2(right.mask, right), 0, undefined, lora.adapters(false)).dataSync());
    expect(maxAbsDiff(mergedNet.hidden(t2(right.ids, right), t2(right.mask, right)).dataSync(), withAdapter)).toBeLessThan(1e-4);
    expect(() =>
      parseAdapter({ ...files, 'adapter_config.json': new TextEncoder().encode(JSON.stringify({ ...peft, fan_in_fan_out: true })) }, config, 'a'),
    ).toThrow("a/adapter_config.json: fan_in_fan_out must be false for Llama's nn.Linear layers");
    net.dispose();
    mergedNet.dispose();
    lora.dispose();
  });
});
