/**
 * One training step of a tiny model, to compare backends: the same loss and LoRA gradients on every backend, within
 * 1e-4 relative (tested on the CPU backends; bench:train --parity checks the others, a GPU among them).
 */
import * as tf from '@tensorflow/tfjs';
import { gpt2Config } from '../../core/model/gpt2/config.ts';
import { initModel } from '../../core/model/gpt2/init.ts';
import { Random } from '../../core/random.ts';
import type { OrtOptions } from '../../gpu-server/backends/onnxruntime/blocks.ts';
import { Trainer, type TrainBatch, type TrainSpec } from '../../gpu-server/train/trainer.ts';

export interface StepGradients {
  loss: number;
  /** Every trainable tensor's gradient, in the trainer's variable order. */
  grads: Float32Array[];
}

/** The tiny model, training spec and batch of the comparison (also what the memory-stability test trains on). */
export function tinySetup() {
  const config = gpt2Config({ nLayer: 3, nEmbd: 16, nHead: 2, nPositions: 16 });
  const spec: TrainSpec = {
    lora: { rank: 2, alpha: 4, dropout: 0, targets: ['attn.c_attn', 'mlp.c_fc'] },
    optimizer: {},
    schedule: { lr: 0.01, warmupSteps: 0, kind: 'constant' },
    seed: 2,
  };
  const rng = new Random(3);
  const batch: TrainBatch = {
    cut: 1,
    rows: 4,
    seqLen: 8,
    hidden: Float32Array.from({ length: 4 * 8 * 16 }, () => rng.normal()),
    mask: Int32Array.from({ length: 32 }, (_, i) => (i % 8 < 6 || i < 8 ? 1 : 0)),
    labels: Int32Array.from([0, 1, 1, 0]),
  };
  return { model: initModel(config, { seed: 1, paramNoise: 0.1 }), spec, batch };
}

/**
 * Loss and gradients of one step on the current backend (no update); `blocks`: the adapted blocks on onnxruntime.
 * `training`: with LoRA dropout, whose multipliers every backend draws the same. `targets`: other adapted linears.
 * `deepestCut`: the adapted blocks start there (default 1: the batch's own cut; 2: only the last block is adapted).
 */
export async function tinyStepGradients({
  blocks,
  training = false,
  targets,
  deepestCut = 1,
}: { blocks?: OrtOptions; training?: boolean; targets?: string[]; deepestCut?: number } = {}): Promise<StepGradients> {
  const { model, spec, batch } = tinySetup();
  const t = new Trainer(model, { ...spec, lora: { ...spec.lora, targets: targets ?? spec.lora.targets, dropout: training ? 0.2 : 0 } }, deepestCut, { blocks });
  // B starts at zero, so give the adapters values that make every gradient non-trivial.
  const w = t.exportAdapter();
  t.loadAdapter({ ...w, b: new Map([...w.b].map(([k, v]) => [k, v.map((_, i) => Math.sin(i) * 0.1)])) });
  const { loss, grads } = await t.lossAndGradients(batch, training);
  const out = { loss: loss.dataSync()[0]!, grads: t.variables().map((v) => grads[v.name]!.dataSync() as Float32Array) };
  tf.dispose([loss, ...Object.values(grads)]);
  t.dispose();
  return out;
}

/** The largest difference between two steps' loss and gradients, each relative to the reference's largest value. */
export function maxRelativeDifference(got: StepGradients, want: StepGradients): number {
  let worst = Math.abs(got.loss - want.loss) / Math.abs(want.loss);
  want.grads.forEach((w, i) => {
    const scale = Math.max(...Array.from(w, Math.abs));
    if (!(scale > 0)) throw new Error(`gradient ${i} of the reference step is zero: the comparison would prove nothing`);
    w.forEach((x, j) => (worst = Math.max(worst, Math.abs(got.grads[i]![j]! - x) / scale)));
  });
  return worst;
}
