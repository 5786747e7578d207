/**
 * SplitLoRA as it runs: its devices work in parallel, each on its own copy of the adapters below the cut, while the
 * server trains the blocks above on their activations as they arrive, one batch at a time (step i of every device,
 * in the round's order, then step i + 1). The server returns the gradient at the cut to each device, which runs its
 * backward pass; every `avgEvery` steps of each device (and at the round's end) the devices' copies are averaged,
 * weighted by their rows, and every device continues from the average.
 */
import * as tf from '@tensorflow/tfjs';
import type { AdapterWeights } from '../../core/peft/adapter.ts';
import type { Trainer, TrainBatch } from '../../gpu-server/train/trainer.ts';
import type { TokenBatch } from './setup.ts';
import { averageAdapters } from './sim.ts';

export interface SplitLoraRound {
  order: readonly string[];
  rows: (id: string) => number;
  batches: (id: string) => TokenBatch[];
  /** The batch from the embeddings up (the device's blocks are trained too). */
  atEmbeddings: (b: TokenBatch) => TrainBatch;
  step: (b: TrainBatch) => Promise<number>;
  cut: number;
  avgEvery: number;
  wireBytes: number;
  nEmbd: number;
}

export interface SplitLoraTraffic {
  losses: number[];
  bytesUp: number;
  bytesDown: number;
  /** The norm of the gradient at the cut of the round's first batch: what the server sends a device. */
  cutGradientNorm: number;
}

/** The adapters of the blocks below `cut` (a device's part). */
export function belowCut(w: AdapterWeights, cut: number): AdapterWeights {
  const keep = (k: string) => Number(k.split('.')[1]) < cut;
  return { ...w, a: new Map([...w.a].filter(([k]) => keep(k))), b: new Map([...w.b].filter(([k]) => keep(k))), head: undefined };
}

/** Loads a device's part of the adapters, leaving the server's part (and the head) as it is. */
export function loadDevicePart(t: Trainer, w: AdapterWeights): void {
  const current = t.exportAdapter();
  t.loadAdapter({ ...current, a: new Map([...current.a, ...w.a]), b: new Map([...current.b, ...w.b]), head: current.head });
}

/** One round; the trainer ends holding the devices' average below the cut and the server's adapters above it. */
export async function splitLoraRound(t: Trainer, r: SplitLoraRound): Promise<SplitLoraTraffic> {
  const out: SplitLoraTraffic = { losses: [], bytesUp: 0, bytesDown: 0, cutGradientNorm: 0 };
  const copies = new Map<string, AdapterWeights>();
  const shared = belowCut(t.exportAdapter(), r.cut);
  for (const id of r.order) copies.set(id, shared);
  const average = () => {
    const avg = averageAdapters(
      r.order.map((id) => copies.get(id)!),
      r.order.map(r.rows),
    );
    for (const id of r.order) copies.set(id, avg);
    // Every device sends its adapters up and gets the average back.
    const size = 4 * [...avg.a.values(), ...avg.b.values()].reduce((a, x) => a + x.length, 0);
    out.bytesUp += size * r.order.length;
    out.bytesDown += size * r.order.length;
    return avg;
  };
  const lists = new Map(r.order.map((id) => [id, r.batches(id)]));
  const steps = Math.max(0, ...[...lists.values()].map((l) => l.length));
  for (let i = 0; i < steps; i++) {
    for (const id of r.order) {
      const b = lists.get(id)![i];
      if (!b) continue;
      loadDevicePart(t, copies.get(id)!);
      const batch = r.atEmbeddings(b);
      if (out.losses.length === 0) out.cutGradientNorm = gradientAtCut(t, batch, r.cut);
      out.losses.push(await r.step(batch));
      copies.set(id, belowCut(t.exportAdapter(), r.cut));
      const activations = b.rows * b.seqLen * r.nEmbd * r.wireBytes;
      out.bytesUp += activations;
      out.bytesDown += activations;
    }
    if ((i + 1) % r.avgEvery === 0 && i + 1 < steps) average();
  }
  loadDevicePart(t, average());
  return out;
}

/** The norm of d loss / d (hidden states at the cut) for a batch: what SplitLoRA's server sends back to a device. */
function gradientAtCut(t: Trainer, b: TrainBatch, cut: number): number {
  return tf.tidy(() => {
    const mask = tf.tensor2d(b.mask, [b.rows, b.seqLen], 'int32');
    const adapters = t.lora.adapters(false);
    const atCut = t.net.blocksForward(tf.tensor3d(b.hidden, [b.rows, b.seqLen, t.net.config.nEmbd]), mask, 0, cut, adapters);
    const g = tf.grad((h: tf.Tensor) => {
      const final = t.net.blocksForward(h as tf.Tensor3D, mask, cut, undefined, adapters);
      if (t.task === 'causal-lm') return t.net.lmLoss(final, b.labels);
      return tf.losses.softmaxCrossEntropy(
        tf.oneHot(tf.tensor1d(b.labels, 'int32'), t.net.config.numLabels),
        tf.matMul(t.net.pool(final, mask), t.head!, false, true),
      );
    })(atCut);
    return tf.norm(g).dataSync()[0];
  });
}
