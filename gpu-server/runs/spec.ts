/** A training run as the operator describes it (POST /runs), checked field by field with defaults filled in. */
import { checkId } from '../../core/storage/keys.ts';
import type { OrderingSpec } from '../ordering/ordering.ts';

/** What a device can afford: the planner gives it the deepest cut that fits (gpu-server/runs/cuts.ts). */
export interface CapacityProfile {
  /** Memory the prefix may use, in MB (a Cloudflare Worker has 128). */
  memoryMB: number;
  /** Sustained forward throughput, GFLOP/s (onnxruntime-web in workerd on one core: ~10-25). */
  gflops: number;
  /** Longest a batch's forward pass may take, in seconds. */
  maxBatchSeconds: number;
  /** Prefix weights: int8 keeps the token table outside the graph (needed by GPT-2 small in 128 MB). */
  weights: 'fp32' | 'int8';
}

export interface DeviceSpec {
  id: string;
  url: string;
  profile: CapacityProfile;
  /** Overrides the planner. */
  cut?: number;
}

export interface EvalExample {
  text: string;
  text_pair?: string;
  label: string;
}

export interface RunSpec {
  /** A model folder in the Hugging Face layout (GPT-2 or Llama), on the server. */
  model: string;
  task: {
    /**
     * classification: labelled text, a classification head on the last token. generation: prompts and completions
     * (causal-LM loss on the completion), evaluated by generating.
     */
    kind: 'classification' | 'generation';
    /** The label set (classification; empty for generation). */
    labels: string[];
    /**
     * Held-out data on the server: a GLUE TSV or JSON-lines file (generation: {prompt, completion} or GSM8K
     * {question, answer} lines), or inline rows (classification).
     */
    eval?: { path: string; format: 'tsv' | 'jsonl'; limit?: number };
    evalRows?: EvalExample[];
    /** Generation's evaluation: greedy completions of the first `limit` held-out prompts, at most maxNewTokens each. */
    generate: { maxNewTokens: number; limit: number };
  };
  devices: DeviceSpec[];
  ordering: OrderingSpec;
  /** targets: block linears by module path; the family's default (GPT-2 attn.c_attn, Llama q_proj and v_proj) when not given. */
  lora: { rank: number; alpha: number; dropout: number; targets?: string[] };
  optimizer: { lr: number; weightDecay: number; clipNorm: number; warmupSteps: number; schedule: 'constant' | 'linear' | 'cosine' };
  training: { batchSize: number; seqLen: number; dtype: 'fp32' | 'fp16'; seed: number; rounds: number };
}

export class SpecError extends Error {}

type Obj = Record<string, unknown>;

function object(v: unknown, field: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new SpecError(`field '${field}' must be an object`);
  return v as Obj;
}

function num(o: Obj, key: string, field: string, fallback: number | undefined, check: (n: number) => boolean, rule: string): number {
  const v = o[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) throw new SpecError(`field '${field}.${key}' must be ${rule}, got ${JSON.stringify(o[key])}`);
  return v;
}

const positiveInt = (n: number) => Number.isSafeInteger(n) && n > 0;

export function parseRunSpec(value: unknown): RunSpec {
  const r = object(value, 'run');
  if (typeof r.model !== 'string' || !r.model) throw new SpecError("field 'model' must be the path of a model folder (GPT-2 or Llama) on the server");
  const task = object(r.task, 'task');
  const kind = task.kind ?? 'classification';
  if (kind !== 'classification' && kind !== 'generation') throw new SpecError("field 'task.kind' must be classification or generation");
  const labels = kind === 'generation' ? (task.labels ?? []) : task.labels;
  if (kind === 'generation' && !(Array.isArray(labels) && labels.length === 0)) throw new SpecError("field 'task.labels' must be empty for a generation task");
  if (kind === 'classification' && (!Array.isArray(labels) || labels.length < 2 || !labels.every((l) => typeof l === 'string') || new Set(labels).size !== labels.length)) {
    throw new SpecError("field 'task.labels' must list at least two distinct labels");
  }
  if (kind === 'generation' && task.evalRows !== undefined) throw new SpecError("field 'task.evalRows' is for classification; a generation task's held-out rows come from task.eval (JSON lines)");
  const gen = object(task.generate ?? {}, 'task.generate');
  const generate = {
    maxNewTokens: num(gen, 'maxNewTokens', 'task.generate', 96, positiveInt, 'a positive integer'),
    limit: num(gen, 'limit', 'task.generate', 8, (n) => Number.isSafeInteger(n) && n >= 0, 'a non-negative integer'),
  };
  let evalFile: RunSpec['task']['eval'];
  if (task.eval !== undefined) {
    const e = object(task.eval, 'task.eval');
    if (typeof e.path !== 'string') throw new SpecError("field 'task.eval.path' must be a file path");
    const format = e.format ?? (e.path.endsWith('.tsv') ? 'tsv' : 'jsonl');
    if (format !== 'tsv' && format !== 'jsonl') throw new SpecError("field 'task.eval.format' must be tsv or jsonl");
    if (kind === 'generation' && format !== 'jsonl') throw new SpecError("field 'task.eval.format' must be jsonl for a generation task");
    evalFile = { path: e.path, format, limit: e.limit === undefined ? undefined : num(e, 'limit', 'task.eval', undefined, positiveInt, 'a positive integer') };
  }
  const evalRows = task.evalRows as EvalExample[] | undefined;
  if (evalRows !== undefined && (!Array.isArray(evalRows) || !evalRows.every((x) => typeof x?.text === 'string' && (labels as string[]).includes(String(x.label))))) {
    throw new SpecError("field 'task.evalRows' must be rows of {text, text_pair?, label} with labels from task.labels");
  }
  if (!Array.isArray(r.devices) || r.devices.length === 0) throw new SpecError("field 'devices' must list at least one device");
  const devices = r.devices.map((d, i): DeviceSpec => {
    const o = object(d, `devices[${i}]`);
    const f = `devices[${i}]`;
    if (typeof o.id !== 'string') throw new SpecError(`field '${f}.id' must be a string`);
    try {
      checkId('device', o.id);
    } catch (e) {
      throw new SpecError(`field '${f}.id': ${(e as Error).message}`);
    }
    if (typeof o.url !== 'string' || !/^https?:\/\//.test(o.url)) throw new SpecError(`field '${f}.url' must be the device worker's http(s) URL`);
    const p = object(o.profile ?? {}, `${f}.profile`);
    const weights = p.weights ?? 'fp32';
    if (weights !== 'fp32' && weights !== 'int8') throw new SpecError(`field '${f}.profile.weights' must be fp32 or int8`);
    return {
      id: o.id,
      url: o.url,
      profile: {
        memoryMB: num(p, 'memoryMB', `${f}.profile`, 128, (n) => n > 0, 'a positive number'),
        gflops: num(p, 'gflops', `${f}.profile`, 10, (n) => n > 0, 'a positive number'),
        maxBatchSeconds: num(p, 'maxBatchSeconds', `${f}.profile`, 30, (n) => n > 0, 'a positive number'),
        weights,
      },
      cut: o.cut === undefined ? undefined : num(o, 'cut', f, undefined, (n) => Number.isSafeInteger(n) && n >= 0, 'a non-negative integer'),
    };
  });
  const ids = devices.map((d) => d.id);
  const dup = ids.find((id, i) => ids.indexOf(id) !== i);
  if (dup) throw new SpecError(`field 'devices': device '${dup}' is listed twice`);

  const ord = object(r.ordering ?? { kind: 'random-reshuffle' }, 'ordering');
  const kinds = ['random-reshuffle', 'shuffle-once', 'fixed', 'grab'];
  if (!kinds.includes(ord.kind as string)) throw new SpecError(`field 'ordering.kind' must be one of ${kinds.join(', ')}`);
  if (ord.order !== undefined) {
    if (!Array.isArray(ord.order)) throw new SpecError("field 'ordering.order' must list device ids");
    const unknown = ord.order.find((d) => !ids.includes(d));
    if (unknown !== undefined) throw new SpecError(`field 'ordering.order': unknown device '${unknown}'`);
  }
  if (ord.kind === 'fixed' && !Array.isArray(ord.order)) throw new SpecError("field 'ordering.order' is required for a fixed ordering");

  const lora = object(r.lora ?? {}, 'lora');
  const targets = lora.targets as string[] | undefined;
  // Checked against the model's own linears when the run is created (the family is the model folder's).
  if (targets !== undefined && (!Array.isArray(targets) || targets.length === 0 || !targets.every((t) => typeof t === 'string'))) {
    throw new SpecError("field 'lora.targets' must list block linears by module path (e.g. attn.c_attn, self_attn.q_proj)");
  }
  const opt = object(r.optimizer ?? {}, 'optimizer');
  const schedule = opt.schedule ?? 'linear';
  if (!['constant', 'linear', 'cosine'].includes(schedule as string)) throw new SpecError("field 'optimizer.schedule' must be constant, linear or cosine");
  const tr = object(r.training ?? {}, 'training');
  const dtype = tr.dtype ?? 'fp32';
  if (dtype !== 'fp32' && dtype !== 'fp16') throw new SpecError("field 'training.dtype' must be fp32 or fp16");
  const rank = num(lora, 'rank', 'lora', 8, positiveInt, 'a positive integer');
  return {
    model: r.model,
    task: { kind, labels: labels as string[], eval: evalFile, evalRows, generate },
    devices,
    ordering: ord as OrderingSpec,
    lora: {
      rank,
      alpha: num(lora, 'alpha', 'lora', 2 * rank, (n) => n > 0, 'a positive number'),
      dropout: num(lora, 'dropout', 'lora', 0.05, (n) => n >= 0 && n < 1, 'in [0, 1)'),
      targets,
    },
    optimizer: {
      lr: num(opt, 'lr', 'optimizer', 2e-3, (n) => n > 0, 'a positive number'),
      weightDecay: num(opt, 'weightDecay', 'optimizer', 0.01, (n) => n >= 0, 'non-negative'),
      clipNorm: num(opt, 'clipNorm', 'optimizer', 1, (n) => n >= 0, 'non-negative'),
      warmupSteps: num(opt, 'warmupSteps', 'optimizer', 0, (n) => Number.isSafeInteger(n) && n >= 0, 'a non-negative integer'),
      schedule: schedule as RunSpec['optimizer']['schedule'],
    },
    training: {
      batchSize: num(tr, 'batchSize', 'training', 16, positiveInt, 'a positive integer'),
      seqLen: num(tr, 'seqLen', 'training', 64, positiveInt, 'a positive integer'),
      dtype,
      seed: num(tr, 'seed', 'training', 0, (n) => Number.isSafeInteger(n) && n >= 0, 'a non-negative integer'),
      rounds: num(tr, 'rounds', 'training', 3, positiveInt, 'a positive integer'),
    },
  };
}
