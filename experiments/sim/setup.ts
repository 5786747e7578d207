/** What a simulation runs on: the devices' tokenized shards and the evaluation split, from one task and partition. */
import { encodeGenerationBatch, promptIds, type GenerationExample } from '../../core/data/generation.ts';
import { textInput, type Example } from '../../core/data/shard.ts';
import { describePartition, labelHistogram, partition, type PartitionSpec } from '../../core/data/partition.ts';
import { GPT2Tokenizer } from '../../core/tokenizer/gpt2.ts';
import type { Tokenizer } from '../../core/tokenizer/tokenizer.ts';
import type { GenerationTaskData, TaskData } from '../tasks.ts';

export interface TokenBatch {
  ids: Int32Array;
  mask: Int32Array;
  /** A class per row, or (generation) a next-token id per position, IGNORE_INDEX outside the completions. */
  labels: Int32Array;
  rows: number;
  seqLen: number;
}

export interface SimDevice {
  id: string;
  rows: number;
  batches: TokenBatch[];
  histogram: number[];
}

export interface SimData {
  task: TaskData | GenerationTaskData;
  partition: string;
  devices: SimDevice[];
  evaluation: TokenBatch[];
  evalRows: number;
  /** Generation: the held-out prompts (token ids) to complete, with the final number each should reach. */
  /** Held-out prompts, each with its reference completion ("... #### 72"). */
  prompts?: Array<{ ids: number[]; reference: string }>;
}

export function tokenBatches(tokenizer: Tokenizer, rows: readonly Example[], batchSize: number, seqLen: number, padTokenId: number): TokenBatch[] {
  const out: TokenBatch[] = [];
  for (let i = 0; i < rows.length; i += batchSize) {
    const chunk = rows.slice(i, i + batchSize);
    const enc = tokenizer.encodeBatch(chunk.map(textInput), { maxLength: seqLen, padTokenId });
    out.push({ ids: enc.ids, mask: enc.attentionMask, labels: Int32Array.from(chunk, (r) => r.label), rows: enc.rows, seqLen: enc.seqLen });
  }
  return out;
}

export interface SetupOptions {
  devices: number;
  partition: PartitionSpec;
  /** Training rows used in all (a sample of the task's training split), and evaluation rows. */
  trainRows: number;
  evalRows: number;
  batchSize: number;
  seqLen: number;
  padTokenId: number;
  seed: number;
}

/**
 * A generation task's simulation: devices' prompts and completions as causal-LM batches (loss on completions), the
 * evaluation batches, and `generate` held-out prompts to complete. Only label-free partitions apply (iid, quantity).
 */
export function setUpGenerationSimulation(task: GenerationTaskData, tokenizer: Tokenizer, o: SetupOptions & { generate: number }): SimData {
  if (o.partition.kind !== 'iid' && o.partition.kind !== 'quantity')
    throw new Error(`partition '${describePartition(o.partition)}' skews labels; a generation task has none: use iid or quantity:ALPHA`);
  const train = task.train.slice(0, o.trainRows);
  const parts = partition(
    train.map(() => 0),
    o.devices,
    o.partition,
    o.seed,
  );
  const batches = (rows: readonly GenerationExample[]): TokenBatch[] => {
    const out: TokenBatch[] = [];
    for (let i = 0; i < rows.length; i += o.batchSize) {
      const enc = encodeGenerationBatch(tokenizer, rows.slice(i, i + o.batchSize), o.seqLen, o.padTokenId);
      out.push({ ids: enc.ids, mask: enc.attentionMask, labels: enc.labels, rows: enc.rows, seqLen: enc.seqLen });
    }
    return out;
  };
  const held = task.eval.slice(0, o.evalRows);
  return {
    task,
    partition: describePartition(o.partition),
    devices: parts.map((p, d) => ({ id: `device-${d}`, rows: p.length, batches: batches(p.map((i) => train[i]!)), histogram: [p.length] })),
    evaluation: batches(held),
    evalRows: held.length,
    prompts: held.slice(0, o.generate).map((r) => ({ ids: promptIds(tokenizer, r.prompt), reference: r.completion })),
  };
}

/** A classification task's simulation, tokenized by the base model's tokenizer (GPT-2's BPE for a folder without one). */
export function setUpSimulation(task: TaskData, o: SetupOptions, tokenizer: Tokenizer = new GPT2Tokenizer()): SimData {
  // A seeded sample of the training split, so every method and partition sees the same rows.
  const step = Math.max(1, Math.floor(task.train.length / o.trainRows));
  const train = task.train.filter((_, i) => i % step === 0).slice(0, o.trainRows);
  const labels = train.map((r) => r.label);
  const parts = partition(labels, o.devices, o.partition, o.seed);
  const hist = labelHistogram(labels, parts, task.labels.length);
  return {
    task,
    partition: describePartition(o.partition),
    devices: parts.map((p, d) => ({
      id: `device-${d}`,
      rows: p.length,
      batches: tokenBatches(
        tokenizer,
        p.map((i) => train[i]),
        o.batchSize,
        o.seqLen,
        o.padTokenId,
      ),
      histogram: hist[d],
    })),
    evaluation: tokenBatches(tokenizer, task.eval.slice(0, o.evalRows), o.batchSize, o.seqLen, o.padTokenId),
    evalRows: Math.min(o.evalRows, task.eval.length),
  };
}
