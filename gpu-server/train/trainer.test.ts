import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { referenceClassify, referenceHidden } from '../../core/model/gpt2/reference.ts';
import { SCORE, type GPT2Model } from '../../core/model/gpt2/weights.ts';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, adapterFiles, mergeAdapter, parseAdapter, type AdapterWeights } from '../../core/peft/adapter.ts';
import { parseSafetensors } from '../../core/tensors/safetensors.ts';
import { Random } from '../../core/random.ts';
import { batch, leftPadded, maxAbsDiff, tinyLlama, tinyModel, TINY, type Batch } from '../../tests/fixtures.ts';
import { llamaReferenceHidden } from '../../core/model/llama/reference.ts';
import { IGNORE_INDEX } from '../../core/data/generation.ts';
import { initBackend } from '../backends/tfjs/runtime.ts';
import { scoreLogits } from './score.ts';
import { Trainer, type TrainBatch, type TrainSpec } from './trainer.ts';

const model = tinyModel(3);
const spec = (over: Partial<TrainSpec['lora']> = {}): TrainSpec => ({
  lora: { rank: 4, alpha: 8, dropout: 0, targets: ['attn.c_attn', 'mlp.c_proj'], ...over },
  optimizer: { weightDecay: 0.01, clipNorm: 1 },
  schedule: { lr: 0.01, warmupSteps: 0, kind: 'constant' },
  seed: 11,
});
const DEEPEST = 2;
const data = leftPadded(batch([6, 3, 8, 5], 8, 'right', 21));
const labels = Int32Array.from([0, 2, 1, 2]);

/** The batch as a device with cut `cut` would deliver it, from the float64 reference. */
function atCut(b: Batch, cut: number, m: GPT2Model = model): TrainBatch {
  return { cut, rows: b.B, seqLen: b.T, hidden: Float32Array.from(referenceHidden(m, b.ids, b.mask, b.B, b.T, cut)), mask: b.mask, labels };
}

/** Adapter weights with every entry random, so that each one changes the output. */
function randomAdapter(t: Trainer, seed: number): AdapterWeights {
  const rng = new Random(seed);
  const w = t.exportAdapter();
  const fill = (m: Map<string, Float32Array>) => new Map([...m].map(([k, v]) => [k, v.map(() => rng.normal() * 0.3)]));
  return { ...w, a: fill(w.a), b: fill(w.b), head: w.head!.map(() => rng.normal() * 0.3) };
}

/** float64 cross-entropy of the merged model: the reference loss. */
function referenceLoss(w: AdapterWeights): number {
  const logits = referenceClassify(mergeAdapter(model, w), data.ids, data.mask, data.B, data.T);
  return scoreLogits(Float32Array.from(logits), labels, TINY.numLabels).loss;
}

describe('LoRA trainer', () => {
  beforeAll(() => initBackend('wasm'));

  it('starts from the base model exactly (B = 0)', async () => {
    const t = new Trainer(model, spec(), DEEPEST);
    const want = referenceClassify(model, data.ids, data.mask, data.B, data.T);
    expect(maxAbsDiff(await t.predict(atCut(data, DEEPEST)), want)).toBeLessThan(1e-5);
    t.dispose();
  });

  it.each([
    ['TensorFlow.js', undefined],
    ['onnxruntime (ort-cpu; TensorFlow.js holds no block)', { provider: 'cpu' as const, threads: 1 }],
  ])('with adapters, equals the float64 reference of the merged weights, from any cut at or below the deepest: blocks on %s', async (_, blocks) => {
    const t = new Trainer(model, spec(), DEEPEST, { blocks });
    const w = randomAdapter(t, 1);
    t.loadAdapter(w);
    const want = referenceClassify(mergeAdapter(model, w), data.ids, data.mask, data.B, data.T);
    for (const cut of [0, 1, DEEPEST]) expect(maxAbsDiff(await t.predict(atCut(data, cut)), want)).toBeLessThan(1e-5);
    expect(maxAbsDiff(await t.predictTokens(data.ids, data.mask, data.B, data.T), want)).toBeLessThan(1e-5);
    await expect(t.predict(atCut(data, 3))).rejects.toThrow(/cut at 3 is above the run's deepest cut 2/);
    t.dispose();
  });

  it('gradients equal finite differences of the float64 reference loss', async () => {
    const t = new Trainer(model, spec(), DEEPEST);
    const w = randomAdapter(t, 2);
    t.loadAdapter(w);
    const { loss, grads } = await t.lossAndGradients(atCut(data, 1), false);
    expect(loss.dataSync()[0]).toBeCloseTo(referenceLoss(w), 5);
    const eps = 1e-3;
    const probe = (name: string, get: (w: AdapterWeights) => Float32Array, index: number, tfName: string) => {
      const plus = structuredClone(w);
      const minus = structuredClone(w);
      get(plus)[index] += eps;
      get(minus)[index] -= eps;
      const numeric = (referenceLoss(plus) - referenceLoss(minus)) / (2 * eps);
      const analytic = grads[tfName].dataSync()[index];
      expect(Math.abs(analytic - numeric), `${name}[${index}]: ${analytic} vs ${numeric}`).toBeLessThan(2e-3 * Math.max(1, Math.abs(numeric)));
    };
    for (const i of [0, 5, 17]) {
      probe('A h.2.attn.c_attn', (x) => x.a.get('h.2.attn.c_attn')!, i, t.lora.a.get('h.2.attn.c_attn')!.name);
      probe('B h.3.mlp.c_proj', (x) => x.b.get('h.3.mlp.c_proj')!, i, t.lora.b.get('h.3.mlp.c_proj')!.name);
      probe('head', (x) => x.head!, i, t.head!.name);
    }
    tf.dispose([loss, ...Object.values(grads)]);
    t.dispose();
  });

  it.each([
    ['TensorFlow.js', undefined],
    ['onnxruntime', { provider: 'cpu' as const, threads: 1 }],
  ])('skips a step a lying batch makes non-finite, adapters and head as they were, and trains on after it: %s', async (_, blocks) => {
    const t = new Trainer(model, spec(), DEEPEST, { blocks });
    await t.step(atCut(data, DEEPEST)).result();
    const before = t.exportAdapter();
    // 3e38 in every value: finite, yet the next block's layer norm overflows.
    const lie = { ...atCut(data, DEEPEST), hidden: new Float32Array(data.B * data.T * TINY.nEmbd).fill(3e38) };
    const skipped = await t.step(lie).result();
    expect(Number.isFinite(skipped.loss) && Number.isFinite(skipped.gradNorm)).toBe(false);
    expect(skipped.applied).toBe(false);
    const after = t.exportAdapter();
    expect(after.head).toEqual(before.head);
    for (const [k, v] of before.b) expect(after.b.get(k)).toEqual(v);
    const honest = await t.step(atCut(data, DEEPEST)).result();
    expect(honest.applied).toBe(true);
    expect([...t.flatAdapters()].every(Number.isFinite)).toBe(true);
    t.dispose();
  });

  it.each([
    ['TensorFlow.js', undefined],
    ['onnxruntime', { provider: 'cpu' as const, threads: 1 }],
  ])('gives the hidden states at a cut as a device computes them (float64 reference): %s', async (_, blocks) => {
    const t = new Trainer(model, spec(), DEEPEST, { blocks });
    for (const cut of [0, 1, DEEPEST])
      expect(
        maxAbsDiff(await t.hiddenAt(data.ids, data.mask, data.B, data.T, cut), referenceHidden(model, data.ids, data.mask, data.B, data.T, cut)),
      ).toBeLessThan(1e-4);
    t.dispose();
  });

  it('trains: the loss falls, the same seed gives the same weights, and no tensors leak', async () => {
    const run = async () => {
      const t = new Trainer(model, { ...spec({ dropout: 0.1 }), schedule: { lr: 0.05, warmupSteps: 2, kind: 'linear', totalSteps: 30 } }, DEEPEST);
      const before = tf.memory().numTensors;
      const losses: number[] = [];
      for (let i = 0; i < 30; i++) losses.push((await t.trainStep(atCut(data, 1))).loss);
      expect(tf.memory().numTensors).toBe(before + 2 * t.variables().length); // Adam's m and v, created on first use
      const w = t.exportAdapter();
      t.dispose();
      return { losses, w };
    };
    const a = await run();
    const b = await run();
    expect(a.losses[29]).toBeLessThan(a.losses[0] * 0.5);
    expect(b.losses).toEqual(a.losses);
    expect(b.w.b.get('h.3.mlp.c_proj')).toEqual(a.w.b.get('h.3.mlp.c_proj'));
  });

  it('steps issued ahead of reading their losses (the server keeps one in flight) train exactly as steps read one by one', async () => {
    const run = async (ahead: boolean) => {
      const t = new Trainer(model, spec({ dropout: 0.1 }), DEEPEST);
      const before = tf.memory().numTensors;
      const losses: number[] = [];
      let inFlight: ReturnType<Trainer['step']> | undefined;
      for (let i = 0; i < 6; i++) {
        const step = t.step(atCut(data, 1));
        if (ahead) {
          if (inFlight) losses.push((await inFlight.result()).loss);
          inFlight = step;
        } else losses.push((await step.result()).loss);
      }
      if (inFlight) losses.push((await inFlight.result()).loss);
      expect(tf.memory().numTensors).toBe(before + 2 * t.variables().length);
      const w = t.exportAdapter();
      t.dispose();
      return { losses, w };
    };
    const [ahead, oneByOne] = [await run(true), await run(false)];
    expect(ahead.losses).toEqual(oneByOne.losses);
    expect(ahead.w.a.get('h.2.attn.c_attn')).toEqual(oneByOne.w.a.get('h.2.attn.c_attn'));
  });

  it('writes PEFT adapters that load back to the same predictions, and merge into plain GPT-2 weights', async () => {
    const t = new Trainer(model, spec({ dropout: 0.1 }), DEEPEST);
    for (let i = 0; i < 5; i++) await t.trainStep(atCut(data, 1));
    const files = adapterFiles(t.exportAdapter(), TINY, 'tiny-gpt2');
    const config = JSON.parse(new TextDecoder().decode(files[ADAPTER_CONFIG]));
    expect(config).toMatchObject({
      peft_type: 'LORA',
      task_type: 'SEQ_CLS',
      r: 4,
      lora_alpha: 8,
      fan_in_fan_out: true,
      layers_to_transform: [2, 3],
      modules_to_save: ['score'],
      base_model_name_or_path: 'tiny-gpt2',
    });
    expect(config).toMatchObject({ target_modules: ['c_attn', 'mlp.c_proj'], layers_pattern: 'h' }); // only one of the two c_proj: by its path
    const keys = [...parseSafetensors(files[ADAPTER_WEIGHTS]).tensors.keys()];
    expect(keys).toContain('base_model.model.transformer.h.2.attn.c_attn.lora_A.weight');
    expect(keys).toContain('base_model.model.transformer.h.3.mlp.c_proj.lora_B.weight');
    expect(keys).toContain('base_model.model.score.weight');
    expect(parseSafetensors(files[ADAPTER_WEIGHTS]).tensors.get('base_model.model.transformer.h.2.attn.c_attn.lora_A.weight')!.shape).toEqual([4, TINY.nEmbd]);

    const fresh = new Trainer(model, { ...spec(), seed: 999 }, DEEPEST);
    const loaded = parseAdapter(files, TINY);
    fresh.loadAdapter(loaded);
    const want = await t.predictTokens(data.ids, data.mask, data.B, data.T);
    expect(await fresh.predictTokens(data.ids, data.mask, data.B, data.T)).toEqual(want); // exactly
    const merged = mergeAdapter(model, loaded);
    expect(merged.params.get(SCORE)).toEqual(loaded.head);
    expect(maxAbsDiff(referenceClassify(merged, data.ids, data.mask, data.B, data.T), want)).toBeLessThan(1e-5);
    t.dispose();
    fresh.dispose();
  });

  it('refuses an adapter that does not fit the model, naming the file and tensor', () => {
    const t = new Trainer(model, spec(), DEEPEST);
    const files = adapterFiles(t.exportAdapter(), TINY, 'x');
    const wrong = { ...TINY, nEmbd: 16, nHead: 2, nInner: 32 };
    expect(() => parseAdapter(files, wrong, 'out')).toThrow(
      /^out\/adapter_model\.safetensors: tensor 'base_model\.model\.(transformer\.h\.2\.attn\.c_attn\.lora_A\.weight|score\.weight)' has shape/,
    );
    const bad = { ...files, [ADAPTER_CONFIG]: new TextEncoder().encode('{"peft_type":"IA3"}') };
    expect(() => parseAdapter(bad, TINY, 'out')).toThrow('out/adapter_config.json: peft_type "IA3" is not "LORA"');
    t.dispose();
  });
});

describe('causal-LM trainer on a Llama (completion tokens only)', () => {
  const llama = tinyLlama();
  const rows = batch([10, 7, 12, 9], 12, 'right', 3, 97);
  // Labels: next tokens of the second half of each row (the "completion"); prompts and padding carry none.
  const labels = new Int32Array(rows.B * rows.T).fill(IGNORE_INDEX);
  rows.lengths.forEach((n, r) => {
    for (let t = Math.floor(n / 2); t + 1 < n; t++) labels[r * rows.T + t] = rows.ids[r * rows.T + t + 1]!;
  });
  const lmBatch = (cut: number): TrainBatch => ({
    cut,
    rows: rows.B,
    seqLen: rows.T,
    hidden: Float32Array.from(llamaReferenceHidden(llama, rows.ids, rows.mask, rows.B, rows.T, cut)),
    mask: rows.mask,
    labels,
  });
  const lmSpec: TrainSpec = {
    lora: { rank: 4, alpha: 8, dropout: 0.1, targets: ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj'] },
    optimizer: {},
    schedule: { lr: 0.01, warmupSteps: 0, kind: 'constant' },
    seed: 5,
  };

  beforeAll(() => initBackend('wasm'));

  it('learns the completions (loss falls), keeps memory flat, and exports a head-less CAUSAL_LM adapter', async () => {
    const t = new Trainer(llama, lmSpec, 1, { task: 'causal-lm' });
    expect(t.head).toBeUndefined();
    const before = await t.evalLoss(lmBatch(1));
    await t.trainStep(lmBatch(1));
    const tensors = tf.memory().numTensors;
    for (let i = 0; i < 30; i++) await t.trainStep(lmBatch(1));
    expect(tf.memory().numTensors).toBe(tensors);
    const after = await t.evalLoss(lmBatch(1));
    expect(after).toBeLessThan(before - 0.2); // seen 4.50 -> 4.18: a random model's tied head starts near uniform
    const w = t.exportAdapter();
    expect(w.head).toBeUndefined();
    expect(JSON.parse(new TextDecoder().decode(adapterFiles(w, llama.config, 'tiny')[ADAPTER_CONFIG]))).toMatchObject({
      task_type: 'CAUSAL_LM',
      modules_to_save: null,
    });
    await expect(t.trainStep({ ...lmBatch(1), labels: new Int32Array(4) })).rejects.toThrow('a causal-lm batch of 4 x 12 needs 48 labels, got 4');
    expect(await t.generate([1, 5, 9], { maxNewTokens: 4, stop: [] })).toHaveLength(4);
    t.dispose();
  });
});
