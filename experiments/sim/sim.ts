/**
 * What every simulated method shares: the run's settings, one trainer on the model, each batch's hidden states at a
 * cut computed once, the held-out evaluation, the devices' batch order each round, and FedAvg.
 */
import * as tf from '@tensorflow/tfjs';
import type { Model } from '../../core/model/family.ts';
import type { AdapterWeights } from '../../core/peft/adapter.ts';
import type { Tokenizer } from '../../core/tokenizer/tokenizer.ts';
import { deviceBatchOrder } from '../../gpu-server/ordering/turns.ts';
import type { OrderingSpec } from '../../gpu-server/ordering/ordering.ts';
import { Random } from '../../core/random.ts';
import { scoreLogits } from '../../gpu-server/train/score.ts';
import { Trainer, type TrainBatch } from '../../gpu-server/train/trainer.ts';
import { complete, completionLoss } from '../../gpu-server/runs/evaluate.ts';
import { exactMatch } from '../../core/data/gsm8k.ts';
import { IGNORE_INDEX } from '../../core/data/generation.ts';
import type { AdamWSpec } from '../../gpu-server/train/adamw.ts';
import type { BatchOrder } from '../device-time.ts';
import type { SimData, SimDevice, TokenBatch } from './setup.ts';
import type { Participation } from './participation.ts';

export interface SimSpec {
  cut: number;
  rounds: number;
  lora: { rank: number; alpha: number; dropout: number; targets: string[] };
  /** The learning rate, constant (no warm-up, no decay). */
  lr: number;
  /** AdamW's settings (gpu-server/train/adamw.ts), as every method's trainer uses them. */
  optimizer: AdamWSpec;
  seed: number;
  ordering: OrderingSpec;
  /** SplitFrozen: each device's batches together (by-device, the default) or one batch of each device in turn. */
  batchOrder?: BatchOrder;
  /** SplitLoRA: steps between averagings of the device adapters. */
  avgEvery: number;
  /** FedProx: the weight mu of its proximal term mu/2 |w - w_global|^2. */
  proxMu: number;
  /** Which devices deliver each round (experiments/sim/participation.ts); every device by default. */
  participation: Participation;
  /** Bytes per activation value on the wire: 2 (fp16) as the device worker sends them. */
  wireBytes: number;
  /** What a device does around its prefix before the upload (a defence: experiments/privacy-sweep.ts); the plain prefix when absent. */
  device?: (b: TokenBatch, prefix: (ids: Int32Array) => Float32Array) => Float32Array;
}

export class Sim {
  readonly trainer: Trainer;
  private readonly cache = new Map<TokenBatch, TrainBatch>();

  constructor(
    readonly model: Model,
    readonly data: SimData,
    readonly spec: SimSpec,
    /** Where adapters start: LoRA on blocks [loraFrom, n). */
    readonly loraFrom: number,
    /** Generation: decodes what the model writes for the exact-match score. */
    readonly tokenizer?: Tokenizer,
  ) {
    const task = data.prompts ? 'causal-lm' : 'classification';
    this.trainer = new Trainer(
      model,
      { lora: spec.lora, optimizer: spec.optimizer, schedule: { lr: spec.lr, warmupSteps: 0, kind: 'constant' }, seed: spec.seed },
      loraFrom,
      { task },
    );
  }

  /** The batch as the trainer takes it: hidden states at `cut`, from the frozen prefix, computed once. */
  atCut(b: TokenBatch, cut: number): TrainBatch {
    let t = this.cache.get(b);
    if (!t) {
      const prefix = (ids: Int32Array) =>
        tf.tidy(
          () =>
            this.trainer.net
              .hidden(tf.tensor2d(ids, [b.rows, b.seqLen], 'int32'), tf.tensor2d(b.mask, [b.rows, b.seqLen], 'int32'), cut)
              .dataSync() as Float32Array,
        );
      const hidden = this.spec.device && cut === this.spec.cut ? this.spec.device(b, prefix) : prefix(b.ids);
      this.cache.set(b, (t = { cut, rows: b.rows, seqLen: b.seqLen, hidden, mask: b.mask, labels: b.labels }));
    }
    return t;
  }

  batches(d: SimDevice, round: number): TokenBatch[] {
    return roundBatches(d, round, this.spec.seed);
  }

  async evaluate(): Promise<{ accuracy: number; loss: number }> {
    if (this.data.prompts) return this.evaluateGeneration(this.data.prompts);
    const classes = (this.data.task as { labels: string[] }).labels.length;
    const logits: number[] = [];
    const labels: number[] = [];
    for (const b of this.data.evaluation) {
      logits.push(...(await this.trainer.predictTokens(b.ids, b.mask, b.rows, b.seqLen)));
      labels.push(...b.labels);
    }
    const { accuracy, loss } = scoreLogits(Float32Array.from(logits), labels, classes);
    return { accuracy, loss };
  }

  /** Held-out completion loss (per labelled token), and greedy completions scored as the server scores them (strict-match). */
  private async evaluateGeneration(prompts: NonNullable<SimData['prompts']>): Promise<{ accuracy: number; loss: number }> {
    let correct = 0;
    for (const p of prompts) {
      const { strict } = await complete(this.trainer, this.tokenizer!, p.ids, GENERATE_TOKENS);
      if (exactMatch(strict, p.reference)) correct++;
    }
    return { accuracy: prompts.length ? correct / prompts.length : NaN, loss: await completionLoss(this.trainer, this.data.evaluation) };
  }

  dispose(): void {
    this.trainer.dispose();
  }
}

/** Tokens a simulated evaluation generates per held-out prompt. */
const GENERATE_TOKENS = 32;

/** A device's batches in a new order each round, the same for every method. */
export function roundBatches(d: SimDevice, round: number, seed: number): TokenBatch[] {
  return deviceBatchOrder(d.batches.length, { seed, round, device: d.id }).map((i) => d.batches[i]!);
}

/**
 * The centralized bound's batches of a round: every device's rows pooled, shuffled (a new order each round, the same
 * for every run of a seed) and cut into batches of the devices' batch size, so a batch mixes devices' rows. Rows keep
 * their tokens, padded on the right to the batch's longest (pad id, mask 0, generation labels ignored).
 */
export function pooledBatches(devices: readonly SimDevice[], round: number, seed: number, padTokenId: number): TokenBatch[] {
  const all = devices.flatMap((d) => d.batches);
  const size = Math.max(...all.map((b) => b.rows));
  const rows = all.flatMap((b) => Array.from({ length: b.rows }, (_, r) => ({ b, r, perRow: b.labels.length / b.rows })));
  const order = new Random(seed * 31 + round * 7 + 1_000_003).shuffled(rows.length);
  const out: TokenBatch[] = [];
  for (let start = 0; start < order.length; start += size) {
    const picked = order.slice(start, start + size).map((i) => rows[i]!);
    const seqLen = Math.max(...picked.map((x) => x.b.seqLen));
    const perRow = picked[0]!.perRow > 1 ? seqLen : 1;
    const ids = new Int32Array(picked.length * seqLen).fill(padTokenId);
    const mask = new Int32Array(picked.length * seqLen);
    const labels = new Int32Array(picked.length * perRow).fill(IGNORE_INDEX);
    picked.forEach(({ b, r, perRow: own }, i) => {
      ids.set(b.ids.subarray(r * b.seqLen, (r + 1) * b.seqLen), i * seqLen);
      mask.set(b.mask.subarray(r * b.seqLen, (r + 1) * b.seqLen), i * seqLen);
      labels.set(b.labels.subarray(r * own, (r + 1) * own), i * perRow);
    });
    out.push({ ids, mask, labels, rows: picked.length, seqLen });
  }
  return out;
}

/** Weighted average of adapters (FedAvg). */
export function averageAdapters(adapters: AdapterWeights[], weights: number[]): AdapterWeights {
  const total = weights.reduce((a, b) => a + b, 0);
  const avg = (pick: (w: AdapterWeights) => Float32Array) => {
    const out = new Float32Array(pick(adapters[0]).length);
    adapters.forEach((w, i) => pick(w).forEach((x, j) => (out[j] += (x * weights[i]) / total)));
    return out;
  };
  const map = (m: Map<string, Float32Array>, which: 'a' | 'b') => new Map([...m.keys()].map((k) => [k, avg((w) => w[which].get(k)!)]));
  return { ...adapters[0], a: map(adapters[0].a, 'a'), b: map(adapters[0].b, 'b'), head: adapters[0].head && avg((w) => w.head!) };
}
