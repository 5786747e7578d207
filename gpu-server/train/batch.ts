/** What the trainer is made with and what it consumes. */
import type { AdamWSpec } from './adamw.ts';
import type { LoraSpec } from './lora.ts';
import type { ScheduleSpec } from './schedule.ts';
import type { HiddenBatch } from '../backends/backend.ts';

export interface TrainSpec {
  lora: Omit<LoraSpec, 'from'>;
  optimizer: Partial<AdamWSpec>;
  schedule: ScheduleSpec;
  seed: number;
}

export type Task = 'classification' | 'causal-lm';

/**
 * One batch as the trainer consumes it: hidden states at `cut` [rows, seqLen, d], mask, and labels: [rows] class
 * indices (classification) or [rows * seqLen] next-token ids, IGNORE_INDEX where no loss is taken (causal-lm).
 */
export interface TrainBatch extends HiddenBatch {
  labels: Int32Array;
}
