/** The simulation tests' world: a tiny GPT-2, generated sentiment rows, a one-round spec, and a step taken by hand. */
import { EVERY_DEVICE } from './participation.ts';
import * as tf from '@tensorflow/tfjs';
import { syntheticSentiment } from '../../core/data/synthetic.ts';
import { gpt2Config } from '../../core/model/gpt2/config.ts';
import { initModel } from '../../core/model/gpt2/init.ts';
import { ADAMW_DEFAULTS } from '../../gpu-server/train/adamw.ts';
import { Trainer } from '../../gpu-server/train/trainer.ts';
import type { TaskData } from '../tasks.ts';
import type { SimSpec } from './sim.ts';
import { setUpSimulation, type TokenBatch } from './setup.ts';

export const config = gpt2Config({ nLayer: 3, nEmbd: 32, nHead: 4, nPositions: 32 });
export const model = initModel(config, { seed: 2 });
export const rows = syntheticSentiment(120, 5).map((r) => ({ text: r.text, label: Number(r.label) }));
const task: TaskData = { name: 'sst2', labels: ['0', '1'], train: rows.slice(40), eval: rows.slice(0, 40), notes: [] };
export const spec: SimSpec = {
  cut: 1,
  rounds: 1,
  lora: { rank: 4, alpha: 8, dropout: 0, targets: ['attn.c_attn'] },
  lr: 0.01,
  optimizer: ADAMW_DEFAULTS,
  seed: 3,
  ordering: { kind: 'fixed', order: ['device-0', 'device-1'] },
  avgEvery: 3,
  proxMu: 0.01,
  participation: EVERY_DEVICE,
  wireBytes: 2,
};

export const data = (devices: number, partition: 'iid' | 'extreme' = 'iid') =>
  setUpSimulation(task, {
    devices,
    partition: { kind: partition },
    trainRows: 80,
    evalRows: 40,
    batchSize: 8,
    seqLen: 16,
    padTokenId: config.padTokenId,
    seed: 0,
  });

/** A trainer as the methods make one, LoRA from block `cut`. */
export const handTrainer = (cut: number) =>
  new Trainer(model, { lora: spec.lora, optimizer: spec.optimizer, schedule: { lr: spec.lr, warmupSteps: 0, kind: 'constant' }, seed: spec.seed }, cut);

/** One training step on a batch of tokens, its hidden states at `cut` computed through the trainer's own blocks. */
export async function stepByHand(t: Trainer, b: TokenBatch, cut: number): Promise<void> {
  const hidden = tf.tidy(
    () => t.net.hidden(tf.tensor2d(b.ids, [b.rows, b.seqLen], 'int32'), tf.tensor2d(b.mask, [b.rows, b.seqLen], 'int32'), cut).dataSync() as Float32Array,
  );
  await t.trainStep({ cut, rows: b.rows, seqLen: b.seqLen, hidden, mask: b.mask, labels: b.labels });
}
