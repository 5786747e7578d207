/** What a simulation runs on: the devices' tokenized shards and the evaluation split, from one task and partition. */
import { textInput, type Example } from '../../core/data/shard.ts';
import { describePartition, labelHistogram, partition, type PartitionSpec } from '../../core/data/partition.ts';
import { GPT2Tokenizer } from '../../core/tokenizer/gpt2.ts';
import type { TaskData } from '../tasks.ts';

export interface TokenBatch {
  ids: Int32Array;
  mask: Int32Array;
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
  task: TaskData;
  partition: string;
  devices: SimDevice[];
  evaluation: TokenBatch[];
  evalRows: number;
}

const tokenizer = new GPT2Tokenizer();

export function tokenBatches(rows: readonly Example[], batchSize: number, seqLen: number, padTokenId: number): TokenBatch[] {
  const out: TokenBatch[] = [];
  for (let i = 0; i < rows.length; i += batchSize) {
    const chunk = rows.slice(i, i + batchSize);
    const enc = tokenizer.encodeBatch(chunk.map(textInput), { maxLength: seqLen, padTokenId });
    out.push({ ids: enc.ids, mask: enc.attentionMask, labels: Int32Array.from(chunk, (r) => r.label), rows: enc.batch, seqLen: enc.seq });
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

export function setUpSimulation(task: TaskData, o: SetupOptions): SimData {
  // A seeded sample of the training split, so every method and partition sees the same rows.
  const step = Math.max(1, Math.floor(task.train.length / o.trainRows));
  const train = task.train.filter((_, i) => i % step === 0).slice(0, o.trainRows);
  const labels = train.map((r) => r.label);
  const parts = partition(labels, o.devices, o.partition, o.seed);
  const hist = labelHistogram(labels, parts, task.labels.length);
  return {
    task,
    partition: describePartition(o.partition),
    devices: parts.map((p, d) => ({ id: `device-${d}`, rows: p.length, batches: tokenBatches(p.map((i) => train[i]), o.batchSize, o.seqLen, o.padTokenId), histogram: hist[d] })),
    evaluation: tokenBatches(task.eval.slice(0, o.evalRows), o.batchSize, o.seqLen, o.padTokenId),
    evalRows: Math.min(o.evalRows, task.eval.length),
  };
}
