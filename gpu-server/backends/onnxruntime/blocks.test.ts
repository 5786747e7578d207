/**
 * The adapted blocks on onnxruntime-node give the TensorFlow.js step's numbers (its cpu backend as the reference),
 * keep memory flat, and train adapters that move between backends through checkpoints.
 */
import * as tf from '@tensorflow/tfjs';
import v8 from 'node:v8';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../../core/storage/memory.ts';
import { loadCheckpoint, saveCheckpoint } from '../../runs/checkpoint.ts';
import { initBackend } from '../tfjs/runtime.ts';
import { maxRelativeDifference, tinySetup, tinyStepGradients } from '../../../tests/support/step-parity.ts';
import { Trainer } from '../../train/trainer.ts';
import type { BlockLinear } from '../../../core/model/gpt2/weights.ts';
import { linearInOut } from '../../../core/model/family.ts';
import { IGNORE_INDEX } from '../../../core/data/generation.ts';
import { Random } from '../../../core/random.ts';
import { lastTokenIndex } from '../../../core/model/masking.ts';
import { OrtBlocks, type BlockArrays } from './blocks.ts';
import { gatherRows } from './rows.ts';
import { tinyLlama } from '../../../tests/fixtures.ts';
import type { OrtOptions } from './types.ts';

v8.setFlagsFromString('--expose-gc');

const gc = vm.runInNewContext('gc') as () => void;

const ORT = { provider: 'cpu' as const, threads: 1 };
const ALL: BlockLinear[] = ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'];

describe('onnxruntime blocks (ort-cpu)', () => {
  // A classification step runs the last block pooled (on each row's last token): its backward with dx, and (with the
  // deepest cut at the last block) its lowest backward after a frozen block.
  it.each([
    ['c_attn and c_fc, no dropout', false, undefined, 1],
    ['c_attn and c_fc, LoRA dropout (the same multipliers)', true, undefined, 1],
    ['all four linears', false, ALL, 1],
    ['only mlp.c_proj (the backward stops above attention)', false, ['mlp.c_proj'] as BlockLinear[], 1],
    ['all four linears, LoRA dropout, the last block alone adapted', true, ALL, 2],
  ])("one step gives the cpu backend's loss and LoRA gradients within 1e-4 (relative): %s", async (_, training, targets, deepestCut) => {
    await initBackend('cpu');
    const cpu = await tinyStepGradients({ training, targets, deepestCut });
    const ort = await tinyStepGradients({ training, targets, deepestCut, blocks: ORT });
    expect(maxRelativeDifference(ort, cpu)).toBeLessThan(1e-4);
    // The comparison sees a wrong gradient.
    expect(maxRelativeDifference({ ...ort, grads: ort.grads.map((g, i) => (i === 0 ? g.map((x) => x * 1.001) : g)) }, cpu)).toBeGreaterThan(1e-4);
  });

  it.each([
    ['GPT-2', () => tinySetup().model, ['attn.c_attn', 'mlp.c_fc']],
    ['Llama', tinyLlama, ['self_attn.q_proj', 'self_attn.v_proj', 'mlp.up_proj']],
  ] as const)("runs a pooled last block on each row's last token alone: the whole block's rows there, [B, d] out (%s)", async (_, makeModel, targets) => {
    const { batch } = tinySetup();
    const model = makeModel();
    const [B, T, d] = [batch.rows, batch.seqLen, model.config.nEmbd];
    const blocks = new OrtBlocks(model, 1, { targets, rank: 2, scale: 2, dropout: false }, ORT);
    const rng = new Random(7);
    const random = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
    const perBlock: BlockArrays[] = [];
    for (const i of [1, 2])
      perBlock[i] = Object.fromEntries(
        targets.map((t) => [t, { a: random(linearInOut(model.config, t)[0] * 2), b: random(2 * linearInOut(model.config, t)[1]) }]),
      );
    const hidden = Float32Array.from({ length: B * T * d }, () => rng.normal());
    // Right padding: the last tokens sit at different positions.
    const rows = lastTokenIndex(batch.mask, B, T).map((t, b) => b * T + t);
    expect(new Set(rows.map((r) => r % T)).size).toBeGreaterThan(1);
    const whole = (await blocks.forward(hidden, batch.mask, [B, T], perBlock)).y.slice();
    const pooled = (await blocks.forward(hidden, batch.mask, [B, T], perBlock, rows)).y;
    expect(pooled.length).toBe(B * d);
    const want = gatherRows(whole, rows, d);
    expect(Math.max(...pooled.map((x, i) => Math.abs(x - want[i]!)))).toBeLessThan(1e-5);
    await blocks.release();
  });

  it('holds no more memory after 1,000 steps than after the first 100', async () => {
    await initBackend('cpu');
    const { model, spec, batch } = tinySetup();
    const t = new Trainer(model, { ...spec, lora: { ...spec.lora, dropout: 0.1 } }, 1, { blocks: ORT });
    for (let i = 0; i < 100; i++) await t.step(batch).result();
    const memory = () => (gc(), process.memoryUsage());
    const [tensors, before] = [tf.memory().numTensors, memory()];
    // Collected as it goes, so that the process's size shows what is held, not garbage not yet collected.
    for (let i = 100; i < 1000; i++) {
      await t.step(batch).result();
      if (i % 100 === 0) gc();
    }
    const after = memory();
    expect(tf.memory().numTensors).toBe(tensors);
    // JS heap and buffers within 2 MB, the process within 32 MB (allocator noise), where 900 leaked tapes or
    // buffers of this model would grow them by hundreds of MB.
    expect(after.heapUsed + after.arrayBuffers - before.heapUsed - before.arrayBuffers).toBeLessThan(2 * 2 ** 20);
    expect(after.rss - before.rss).toBeLessThan(32 * 2 ** 20);
    t.dispose();
  });

  it('checkpoints move between backends: trained on ort-cpu, resumed on cpu, ends where either alone does', async () => {
    await initBackend('cpu');
    const { model, spec, batch } = tinySetup();
    const store = new MemoryStore();
    const run = async (t: Trainer, steps: number) => {
      for (let i = 0; i < steps; i++) await t.step(batch).result();
    };
    const onOrt = new Trainer(model, spec, 1, { blocks: ORT });
    await run(onOrt, 3);
    await saveCheckpoint(store, 'r', onOrt, { seq: 1, round: 0, complete: false, consumed: [], losses: [] }, new Map());
    const resumed = new Trainer(model, spec, 1);
    await loadCheckpoint(store, 'r', resumed);
    await run(resumed, 3);
    await run(onOrt, 3);
    const onCpu = new Trainer(model, spec, 1);
    await run(onCpu, 6);
    const diff = (a: Float32Array, b: Float32Array) => Math.max(...a.map((x, i) => Math.abs(x - b[i]!))) / Math.max(...b.map(Math.abs));
    expect(diff(resumed.flatAdapters(), onCpu.flatAdapters())).toBeLessThan(1e-4);
    expect(diff(onOrt.flatAdapters(), onCpu.flatAdapters())).toBeLessThan(1e-4);
    expect(diff(onCpu.flatAdapters(), new Trainer(model, spec, 1).flatAdapters())).toBeGreaterThan(1e-2);
    for (const t of [onOrt, resumed, onCpu]) t.dispose();
  });

  const EVERY_LLAMA_LINEAR = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];
  it.each([
    ['q/k/v/o, no dropout', ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj'], false, 'causal-lm', 1],
    ['every linear, LoRA dropout', EVERY_LLAMA_LINEAR, true, 'causal-lm', 1],
    ['only mlp.down_proj (the backward stops above the MLP)', ['mlp.down_proj'], false, 'causal-lm', 1],
    // A classifier's last block runs pooled: with dx, and as the lowest adapted block.
    ['classification, every linear, LoRA dropout', EVERY_LLAMA_LINEAR, true, 'classification', 1],
    [
      'classification, q/k/v/o, the last block alone adapted',
      ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj'],
      false,
      'classification',
      2,
    ],
  ] as const)(
    'Llama (GQA, llama3 rope, causal-LM loss over chunks of the LM head or a classifier, a frozen block below the cut): one step equals TF.js cpu within 1e-4: %s',
    async (_, targets, training, task, deepestCut) => {
      await initBackend('cpu');
      const llama = tinyLlama();
      const [B, T] = [5, 12];
      const rng = new Random(4);
      // Left padding in the first row: its positions (and so its rotary angles) start at the first real token; right
      // padding in the second: its last token is not the last position.
      const mask = Int32Array.from({ length: B * T }, (_, i) => (i < 2 || (i >= T + 9 && i < 2 * T) ? 0 : 1));
      // 40 labelled rows: three runs of the LM head graph (logits of 16 rows each at most).
      const labels =
        task === 'classification'
          ? Int32Array.from({ length: B }, (_, i) => i % 2)
          : Int32Array.from({ length: B * T }, (_, i) => (i % 3 === 0 ? IGNORE_INDEX : (i * 7) % 97));
      // Cut 0 under a deeper cut: the blocks below it run frozen (onnxruntime's inference graph) before the adapted ones.
      const batch = { cut: 0, rows: B, seqLen: T, hidden: Float32Array.from({ length: B * T * 32 }, () => rng.normal()), mask, labels };
      const step = async (blocks?: OrtOptions) => {
        const t = new Trainer(
          llama,
          {
            lora: { rank: 2, alpha: 4, dropout: training ? 0.2 : 0, targets: [...targets] },
            optimizer: {},
            schedule: { lr: 0.01, warmupSteps: 0, kind: 'constant' },
            seed: 5,
          },
          deepestCut,
          { task, blocks },
        );
        for (const [key, b] of t.lora.b) b.assign(tf.randomNormal(b.shape, 0, 0.1, 'float32', key.length));
        const { loss, grads } = await t.lossAndGradients(batch, training);
        const out = { loss: loss.dataSync()[0]!, grads: t.variables().map((v) => grads[v.name]!.dataSync() as Float32Array) };
        tf.dispose([loss, ...Object.values(grads)]);
        t.dispose();
        return out;
      };
      const cpu = await step();
      const ort = await step({ ...ORT, lmHeadLogitsBytes: 16 * 4 * llama.config.vocabSize });
      const diff = maxRelativeDifference(ort, cpu);
      expect(diff).toBeLessThan(1e-4);
      // Two implementations ran: float32 rounding differs somewhere.
      expect(diff).toBeGreaterThan(0);
    },
  );
});
