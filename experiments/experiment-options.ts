/** What an experiment runs: the task, model, partition, methods and training settings (experiment.ts runs it). */
import type { PartitionSpec } from '../core/data/partition.ts';
import type { Model } from '../core/model/family.ts';
import type { Tokenizer } from '../core/tokenizer/tokenizer.ts';
import type { OrderingSpec } from '../gpu-server/ordering/ordering.ts';
import type { BatchOrder } from './device-time.ts';
import type { MethodName } from './sim/accounting.ts';
import type { GenerationTaskData, TaskData } from './tasks.ts';

export interface ExperimentOptions {
  /** A classification task, or GSM8K (generation: causal-LM on a Llama, evaluated by generating; needs `tokenizer`). */
  task: TaskData | GenerationTaskData;
  model: Model;
  tokenizer?: Tokenizer;
  modelName: string;
  partition: PartitionSpec;
  methods: MethodName[];
  devices: number;
  rounds: number;
  trainRows: number;
  evalRows: number;
  batchSize: number;
  seqLen: number;
  cut: number;
  lr: number;
  rank: number;
  ordering: OrderingSpec;
  /** SplitFrozen's batches: device after device (the default) or interleaved. */
  batchOrder?: BatchOrder;
  avgEvery: number;
  seed: number;
  out: string;
  command: string;
  log?: (m: string) => void;
}
