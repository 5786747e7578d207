/** What an experiment runs: the task, model, partition, methods and training settings (experiment.ts runs it). */
import { EVERY_DEVICE, type Participation } from './sim/participation.ts';
import type { PartitionSpec } from '../core/data/partition.ts';
import { familyOf, type Model } from '../core/model/family.ts';
import type { Tokenizer } from '../core/tokenizer/tokenizer.ts';
import type { OrderingSpec } from '../gpu-server/ordering/ordering.ts';
import type { BatchOrder } from './device-time.ts';
import { ADAMW_DEFAULTS } from '../gpu-server/train/adamw.ts';
import type { MethodName } from './sim/accounting.ts';
import type { SimSpec } from './sim/sim.ts';
import type { GenerationTaskData, TaskData } from './tasks.ts';

/** FedProx's mu where no sweep chose one: among the values its authors report on their benchmarks. */
export const DEFAULT_PROX_MU = 0.01;

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
  /** A learning rate per method (from a validation sweep: experiments/sweep.ts), where it differs from `lr`. */
  lrByMethod?: Partial<Record<MethodName, number>>;
  rank: number;
  /** FedProx's mu (from a validation sweep: experiments/sweep.ts); 0.01 unless given. */
  proxMu?: number;
  ordering: OrderingSpec;
  /** SplitFrozen's batches: device after device (the default) or interleaved. */
  batchOrder?: BatchOrder;
  avgEvery: number;
  /** Partial participation and dropouts among many devices; every device delivers by default. */
  participation?: Participation;
  seed: number;
  out: string;
  command: string;
  log?: (m: string) => void;
}

/** Every training setting the methods run with, resolved once from the options: what results record and are keyed by. */
export function simSpec(o: ExperimentOptions): SimSpec {
  return {
    cut: o.cut,
    rounds: o.rounds,
    lora: { rank: o.rank, alpha: 2 * o.rank, dropout: 0.05, targets: [...familyOf(o.model.config).defaultTargets] },
    lr: o.lr,
    optimizer: ADAMW_DEFAULTS,
    seed: o.seed,
    ordering: o.ordering,
    batchOrder: o.batchOrder,
    avgEvery: o.avgEvery,
    proxMu: o.proxMu ?? DEFAULT_PROX_MU,
    participation: o.participation ?? EVERY_DEVICE,
    wireBytes: 2,
  };
}
