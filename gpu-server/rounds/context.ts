/**
 * What a round works with: the server's options, and a run's state in memory (the model, tokenizer and trainer loaded
 * once per run, what the last checkpoint said, the device segments already exported).
 */
import type { GenerationExample } from '../../core/data/generation.ts';
import type { Example } from '../../core/data/shard.ts';
import type { Model } from '../../core/model/family.ts';
import type { ObjectStore } from '../../core/storage/store.ts';
import type { Tokenizer } from '../../core/tokenizer/tokenizer.ts';
import { DeviceClient } from '../../core/wire/device-client.ts';
import { readModelFolder, readTokenizer } from '../model/folder.ts';
import { loadCheckpoint, type CheckpointMeta, type DeviceStart } from '../runs/checkpoint.ts';
import { evaluationRows, generationEvalRows } from '../runs/data.ts';
import { NotFound } from '../runs/errors.ts';
import type { DeviceSpec } from '../runs/spec.ts';
import type { RoundProgress, RunRecord } from '../runs/types.ts';
import type { OrtOptions } from '../backends/onnxruntime/blocks.ts';
import { Trainer } from '../train/trainer.ts';
import type { CutCalibration } from './bounds.ts';

/** The calls a round makes to a device (DeviceClient over HTTP; tests may give an in-process one). */
export type DeviceApi = Pick<DeviceClient, 'shards' | 'policy' | 'startRound' | 'roundStatus'>;

export interface RoundOptions {
  store: ObjectStore;
  /** Shared with the device workers: signs round requests. */
  roundSecret: string;
  log?: (message: string) => void;
  prefetch?: number;
  pollMs?: number;
  /** Presigned URL lifetime. */
  urlSeconds?: number;
  /**
   * 'pipelined' (the default) asks every device to start at once and trains on each while the later ones compute;
   * 'stop-and-wait' asks the next device only after training on the previous one (the baseline of bench:pipeline).
   */
  schedule?: 'pipelined' | 'stop-and-wait';
  /** Seconds between checkpoints within a device's batches (default 30; 0: after every batch). */
  checkpointSeconds?: number;
  /** Folders a run spec may name files in (model, evaluation file); default: the working directory. */
  dataDirs?: string[];
  /** The adapted blocks on onnxruntime-node (backends ort-cpu, ort-webgpu); default: on TensorFlow.js. */
  blocks?: OrtOptions;
  /** How the server reaches a device; default: signed HTTP (DeviceClient). */
  device?: (d: DeviceSpec, roundSecret: string, timeoutMs: number) => DeviceApi;
}

export interface Loaded {
  model: Model;
  tokenizer: Tokenizer;
  trainer: Trainer;
  evalRows: Example[] | GenerationExample[];
}

/** A device segment in storage: the graph's SHA-256, and its token table's and external weights' where it has them. */
export interface SegmentRef {
  modelSha256: string;
  tokenTableSha256?: string;
  weightsSha256?: string;
}

export interface RunState {
  record: RunRecord;
  model?: Model;
  tokenizer?: Tokenizer;
  /** The model folder's tokenizer.json in storage, for devices (families whose tokenizer devices do not hold). */
  tokenizerRef?: { sha256: string; bos?: number; eos: number } | null;
  trainer?: Trainer;
  evalRows?: Example[] | GenerationExample[];
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
}

/** The round schedule the server runs (pipelined unless told otherwise), resolved in this one place. */
export function scheduleOf(opts: RoundOptions): 'pipelined' | 'stop-and-wait' {
  return opts.schedule ?? 'pipelined';
}

export function deviceApi(s: RunState, opts: RoundOptions, deviceId: string): DeviceApi {
  const d = s.record.spec.devices.find((x) => x.id === deviceId);
  if (!d) throw new NotFound(`run ${s.record.id} has no device '${deviceId}'; its devices are ${s.record.spec.devices.map((x) => x.id).join(', ')}`);
  // A device's answer may take the run's limits.callSeconds at most.
  const timeoutMs = s.record.spec.limits.callSeconds * 1000;
  return opts.device ? opts.device(d, opts.roundSecret, timeoutMs) : new DeviceClient(d.url, d.id, opts.roundSecret, timeoutMs);
}

/** Loads what the run's rounds need, once per run (a restarted server: from the folder and the checkpoint). */
export async function loadRun(s: RunState, opts: RoundOptions): Promise<Loaded> {
  const { record } = s;
  const generation = record.spec.task.kind === 'generation';
  if (!s.model) {
    s.model = await readModelFolder(record.spec.model);
    if (!generation) s.model.config = { ...s.model.config, numLabels: record.spec.task.labels.length };
  }
  s.tokenizer ??= await readTokenizer(record.spec.model, s.model.config);
  s.evalRows ??= generation ? await generationEvalRows(record.spec) : await evaluationRows(record.spec);
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
  return { model: s.model, tokenizer: s.tokenizer, trainer: s.trainer, evalRows: s.evalRows };
}

/** Forgets the trainer and what its checkpoint said: the next round reloads them from storage. */
export function unload(s: RunState): void {
  s.trainer?.dispose();
  Object.assign(s, { trainer: undefined, checkpoint: undefined, deviceStart: undefined, updates: new Map() });
}
