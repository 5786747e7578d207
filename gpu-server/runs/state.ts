/**
 * A run's state in memory: the model, tokenizer and trainer loaded once per run, what the last checkpoint said, the
 * device segments already exported, the round in progress. Rounds (gpu-server/rounds/) run their phases over it.
 */
import type { GenerationExample } from '../../core/data/generation.ts';
import type { Example } from '../../core/data/shard.ts';
import type { Model } from '../../core/model/family.ts';
import type { ObjectStore } from '../../core/storage/store.ts';
import type { Tokenizer } from '../../core/tokenizer/tokenizer.ts';
import type { OrtOptions } from '../backends/onnxruntime/types.ts';
import { readModelFolder, readTokenizer } from '../model-folder/folder.ts';
import type { CutCalibration } from '../rounds/bounds.ts';
import { Trainer } from '../train/trainer.ts';
import { loadCheckpoint, type CheckpointMeta, type DeviceStart } from './checkpoint.ts';
import { evaluationRows, generationEval } from './data.ts';
import type { RoundMetrics, RoundProgress, RunRecord } from './types.ts';

export interface RunState {
  record: RunRecord;
  model?: Model;
  tokenizer?: Tokenizer;
  /** The model folder's tokenizer.json in storage, for devices (families whose tokenizer devices do not hold). */
  tokenizerRef?: { sha256: string; bos?: number; eos: number } | null;
  trainer?: Trainer;
  evalRows?: Example[] | GenerationExample[];
  /** Generation: the few-shot context of each held-out row evaluation completes. */
  evalContexts?: string[];
  /** GraB: what training on each device did to the adapters in the last round. */
  updates: Map<string, Float32Array>;
  checkpoint?: CheckpointMeta;
  /** From the checkpoint: the device that was in training and the adapters it started from. */
  deviceStart?: DeviceStart;
  segments: Map<string, Promise<SegmentRef>>;
  /** Per cut: the calibration text through the frozen blocks, which bounds what a device's hidden states may be. */
  calibrations: Map<number, CutCalibration>;
  running?: Promise<void>;
  /** Aborted by a cancel: the round stops at the next batch boundary. */
  cancel?: AbortController;
  progress?: RoundProgress;
  /** The last finished round's metrics, once read (null: none yet): the runs list shows them on every refresh. */
  lastMetrics?: RoundMetrics | null;
}

export interface Loaded {
  model: Model;
  tokenizer: Tokenizer;
  trainer: Trainer;
  evalRows: Example[] | GenerationExample[];
  evalContexts: string[];
}

/** A device segment in storage: the graph's SHA-256, and its token table's and external weights' where it has them. */
export interface SegmentRef {
  modelSha256: string;
  tokenTableSha256?: string;
  weightsSha256?: string;
}

/** What loading a run needs of the server's options. */
export interface LoadOptions {
  store: ObjectStore;
  /** The blocks on onnxruntime-node; default: on TensorFlow.js. */
  blocks?: OrtOptions;
  log?: (message: string) => void;
}

/** Loads what the run's rounds need, once per run (a restarted server: from the folder and the checkpoint). */
export async function loadRun(s: RunState, opts: LoadOptions): Promise<Loaded> {
  const { record } = s;
  const generation = record.spec.task.kind === 'generation';
  if (!s.model) {
    s.model = await readModelFolder(record.spec.model);
    if (!generation) s.model.config = { ...s.model.config, numLabels: record.spec.task.labels.length };
  }
  s.tokenizer ??= await readTokenizer(record.spec.model, s.model.config);
  if (!s.evalRows) {
    if (generation) ({ rows: s.evalRows, contexts: s.evalContexts } = await generationEval(record.spec));
    else s.evalRows = await evaluationRows(record.spec);
  }
  if (!s.trainer) {
    const { lora, optimizer, training } = record.spec;
    s.trainer = new Trainer(
      s.model,
      {
        lora: { ...lora, targets: lora.targets! },
        optimizer: { weightDecay: optimizer.weightDecay, clipNorm: optimizer.clipNorm },
        schedule: { lr: optimizer.lr, warmupSteps: optimizer.warmupSteps, kind: optimizer.schedule, totalSteps: record.totalSteps },
        seed: training.seed,
      },
      record.deepestCut,
      { task: generation ? 'causal-lm' : 'classification', blocks: opts.blocks },
    );
    opts.log?.(`run ${record.id}: adapted blocks on ${s.trainer.blocksOn}`);
    const loaded = await loadCheckpoint(opts.store, record.id, s.trainer, opts.log);
    if (loaded) {
      s.checkpoint = loaded.meta;
      s.updates = loaded.updates;
      s.deviceStart = loaded.start;
    }
  }
  return { model: s.model, tokenizer: s.tokenizer, trainer: s.trainer, evalRows: s.evalRows, evalContexts: s.evalContexts ?? [] };
}

/** Forgets the trainer and what its checkpoint said: the next round reloads them from storage. */
export function unload(s: RunState): void {
  s.trainer?.dispose();
  Object.assign(s, { trainer: undefined, checkpoint: undefined, deviceStart: undefined, updates: new Map() });
}
