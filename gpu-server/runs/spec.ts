/**
 * A training run as the operator describes it (POST /runs): one schema that validates it at the API's edge, fills in
 * the defaults, types it for the server (RunSpec) and documents it in the OpenAPI document (GET /openapi.json).
 */
import { z } from '@hono/zod-openapi';
import { checkId } from '../../core/storage/keys.ts';
import { SpecError } from './errors.ts';
import { describeIssues } from './issues.ts';
import { FEWSHOT_SEED } from '../../core/data/fewshot.ts';

// One message per rule, whichever check fails (type, integer, sign).
const rule = (message: string) => ({ error: message });
const positiveInt = z.number(rule('must be a positive integer')).int(rule('must be a positive integer')).positive(rule('must be a positive integer'));
const nonNegativeInt = z
  .number(rule('must be a non-negative integer'))
  .int(rule('must be a non-negative integer'))
  .nonnegative(rule('must be a non-negative integer'));
const positive = z.number(rule('must be a positive number')).positive(rule('must be a positive number'));
const nonNegative = z.number(rule('must be a non-negative number')).nonnegative(rule('must be a non-negative number'));

const id = (kind: string) =>
  z.string().superRefine((v, ctx) => {
    try {
      checkId(kind, v);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
    }
  });

/** What a device can afford: the planner gives it the deepest cut that fits (gpu-server/runs/cuts.ts). */
const CapacityProfileSchema = z
  .strictObject({
    memoryMB: positive.default(128).openapi({ description: 'Memory the prefix may use, in MB (a Cloudflare Worker has 128).' }),
    gflops: positive.default(10).openapi({ description: 'Sustained forward throughput, GFLOP/s (onnxruntime-web in workerd on one core: ~10-25).' }),
    maxBatchSeconds: positive.default(30).openapi({ description: "Longest a batch's forward pass may take, in seconds." }),
    weights: z
      .enum(['fp32', 'int8'])
      .default('fp32')
      .openapi({ description: 'Prefix weights: int8 keeps the token table outside the graph (needed by GPT-2 small in 128 MB).' }),
  })
  .openapi('CapacityProfile');

const DeviceSpecSchema = z
  .strictObject({
    id: id('device'),
    url: z.string().regex(/^https?:\/\//, "must be the device worker's http(s) URL"),
    profile: CapacityProfileSchema.default({ memoryMB: 128, gflops: 10, maxBatchSeconds: 30, weights: 'fp32' }),
    cut: nonNegativeInt.optional().openapi({ description: 'Overrides the planner.' }),
    rows: positiveInt.optional().openapi({ description: "Rows the device's owner declared: a device whose listing claims more is left out of the round." }),
  })
  .openapi('DeviceSpec');

const EvalExampleSchema = z.strictObject({ text: z.string(), text_pair: z.string().optional(), label: z.string() });

const OrderingSchema = z
  .discriminatedUnion(
    'kind',
    [
      z.strictObject({ kind: z.literal('random-reshuffle') }),
      z.strictObject({ kind: z.literal('shuffle-once') }),
      z.strictObject({ kind: z.literal('fixed'), order: z.array(z.string()) }),
      z.strictObject({ kind: z.literal('grab'), order: z.array(z.string()).optional() }),
    ],
    { error: 'must be one of random-reshuffle, shuffle-once, fixed (with order), grab' },
  )
  .openapi('Ordering', { description: 'In which order the server trains on the devices each round.' });

/** What the run allows one device: no answer, count or delay of a device can cost the run more than these. */
export const LIMIT_DEFAULTS = { maxRowsPerDevice: 20_000, callSeconds: 30, uploadSeconds: 900, maxLossRise: 0.5, guardRows: 64 };

const LimitsSchema = z
  .strictObject({
    maxRowsPerDevice: positiveInt.default(LIMIT_DEFAULTS.maxRowsPerDevice).openapi({
      description:
        'Most rows a device may claim; one that claims more is left out of the round. Bounds the upload URLs, batches and learning-rate schedule one device can ask for.',
    }),
    callSeconds: positive.default(LIMIT_DEFAULTS.callSeconds).openapi({ description: 'Longest the server waits for any one answer of a device.' }),
    uploadSeconds: positive.default(LIMIT_DEFAULTS.uploadSeconds).openapi({
      description:
        "Longest the server waits for a device's uploads (its completion manifest), counted from when it asked the device to start the round: devices that stall cost a pipelined round this much at most, together (it asks them all at its start). Set it above the slowest device's forward pass over all its rows.",
    }),
    maxLossRise: nonNegative.default(LIMIT_DEFAULTS.maxLossRise).openapi({
      description:
        'by-device order: a device whose batches raise the held-out loss by more than this (nats) is rolled back, adapters and optimizer as before it. 0 turns the check off.',
    }),
    guardRows: positiveInt
      .default(LIMIT_DEFAULTS.guardRows)
      .openapi({ description: 'Held-out rows the rollback check evaluates on (the first of the evaluation set).' }),
  })
  .default(LIMIT_DEFAULTS)
  .openapi('Limits');

const RunSpecFields = z.strictObject({
  model: z
    .string(rule('must be the path of a model folder (GPT-2 or Llama) on the server'))
    .min(1, rule('must be the path of a model folder (GPT-2 or Llama) on the server'))
    .openapi({ description: 'A model folder in the Hugging Face layout (GPT-2 or Llama), on the server.' }),
  baseModel: z
    .string(rule('must name the base model, as a Hugging Face hub id (meta-llama/Llama-3.2-1B) or a path'))
    .min(1, rule('must name the base model, as a Hugging Face hub id (meta-llama/Llama-3.2-1B) or a path'))
    .optional()
    .openapi({
      description:
        "What the adapters' adapter_config.json names as their base (base_model_name_or_path, which PEFT's AutoPeftModel loads): a Hugging Face hub id such as meta-llama/Llama-3.2-1B, or a path. Default: `model` as given.",
    }),
  task: z
    .strictObject({
      kind: z.enum(['classification', 'generation']).default('classification').openapi({
        description:
          'classification: labelled text, a head on the last token. generation: prompts and completions (loss on the completion), evaluated by generating.',
      }),
      labels: z.array(z.string()).default([]).openapi({ description: 'The label set (classification; empty for generation).' }),
      eval: z
        .strictObject({ path: z.string(), format: z.enum(['tsv', 'jsonl']).optional(), limit: positiveInt.optional() })
        .optional()
        .openapi({
          description: 'Held-out data on the server: a GLUE TSV or JSON-lines file (generation: {prompt, completion} or GSM8K {question, answer} lines).',
        }),
      evalRows: z.array(EvalExampleSchema).optional().openapi({ description: 'Inline held-out rows (classification).' }),
      generate: z
        .strictObject({
          maxNewTokens: positiveInt.default(96),
          limit: nonNegativeInt.default(8),
          fewshot: z
            .strictObject({
              count: nonNegativeInt.default(5).openapi({ description: "Shots before each prompt (lm-evaluation-harness's gsm8k: 5; 0: zero-shot)." }),
              path: z.string().optional().openapi({
                description:
                  "The split shots are drawn from (JSON lines, as task.eval): GSM8K's train split, as the harness draws. Default: the held-out file itself, a row's own example never among its shots.",
              }),
              seed: nonNegativeInt.default(FEWSHOT_SEED).openapi({ description: "The draws' seed (the harness's fewshot_random_seed, 1234)." }),
            })
            .default({ count: 5, seed: FEWSHOT_SEED }),
        })
        .default({ maxNewTokens: 96, limit: 8, fewshot: { count: 5, seed: FEWSHOT_SEED } })
        .openapi({
          description:
            "Generation's evaluation: greedy completions of the first `limit` held-out prompts, each after few-shot examples as lm-evaluation-harness builds them (a prompt longer than the model's positions less maxNewTokens keeps its end, as the harness truncates).",
        }),
    })
    .transform((t) => ({
      ...t,
      eval: t.eval && { ...t.eval, format: t.eval.format ?? (t.eval.path.endsWith('.tsv') ? ('tsv' as const) : ('jsonl' as const)) },
    })),
  devices: z.array(DeviceSpecSchema).min(1, 'must list at least one device'),
  ordering: OrderingSchema.default({ kind: 'random-reshuffle' }),
  lora: z
    .strictObject({
      rank: positiveInt.default(8),
      alpha: positive.optional().openapi({ description: 'Default: twice the rank.' }),
      dropout: z.number(rule('must be in [0, 1)')).min(0, rule('must be in [0, 1)')).lt(1, rule('must be in [0, 1)')).default(0.05),
      targets: z.array(z.string()).min(1).optional().openapi({
        description:
          "Block linears by module path (e.g. attn.c_attn, self_attn.q_proj); the family's default (GPT-2 attn.c_attn, Llama q_proj and v_proj) when not given.",
      }),
    })
    .default({ rank: 8, dropout: 0.05 })
    .transform((l) => ({ ...l, alpha: l.alpha ?? 2 * l.rank })),
  optimizer: z
    .strictObject({
      lr: positive.default(2e-3),
      weightDecay: nonNegative.default(0.01),
      clipNorm: nonNegative.default(1),
      warmupSteps: nonNegativeInt.default(0),
      schedule: z.enum(['constant', 'linear', 'cosine']).default('linear'),
    })
    .default({ lr: 2e-3, weightDecay: 0.01, clipNorm: 1, warmupSteps: 0, schedule: 'linear' }),
  training: z
    .strictObject({
      batchSize: positiveInt.default(16),
      seqLen: positiveInt.default(64),
      dtype: z.enum(['fp32', 'fp16']).default('fp32'),
      seed: nonNegativeInt.default(0),
      rounds: positiveInt.default(3),
      batchOrder: z.enum(['by-device', 'interleaved']).default('by-device').openapi({
        description:
          "by-device: each device's batches together, device after device in the client order. interleaved: one batch of each device in turn, in that order (a round then mixes the devices' data, which holds up under label skew; the round waits for the slowest device's next batch).",
      }),
    })
    .default({ batchSize: 16, seqLen: 64, dtype: 'fp32', seed: 0, rounds: 3, batchOrder: 'by-device' }),
  limits: LimitsSchema,
});

/** What one field cannot check alone. */
function crossCheck(r: z.output<typeof RunSpecFields>, ctx: z.RefinementCtx): void {
  const issue = (path: Array<string | number>, message: string) => ctx.addIssue({ code: 'custom', path, message });
  const { kind, labels, eval: evalFile, evalRows } = r.task;
  if (kind === 'classification' && (labels.length < 2 || new Set(labels).size !== labels.length))
    issue(['task', 'labels'], 'must list at least two distinct labels');
  if (kind === 'generation' && labels.length > 0) issue(['task', 'labels'], 'must be empty for a generation task');
  if (kind === 'generation' && evalRows)
    issue(['task', 'evalRows'], "is for classification; a generation task's held-out rows come from task.eval (JSON lines)");
  if (kind === 'generation' && evalFile?.format === 'tsv') issue(['task', 'eval', 'format'], 'must be jsonl for a generation task');
  evalRows?.forEach((row, i) => labels.includes(row.label) || issue(['task', 'evalRows', i, 'label'], `'${row.label}' is not one of task.labels`));
  const ids = r.devices.map((d) => d.id);
  const dup = ids.find((d, i) => ids.indexOf(d) !== i);
  if (dup) issue(['devices'], `device '${dup}' is listed twice`);
  const order = 'order' in r.ordering ? r.ordering.order : undefined;
  const unknown = order?.find((d) => !ids.includes(d));
  if (unknown !== undefined) issue(['ordering', 'order'], `unknown device '${unknown}'`);
  if (r.ordering.kind === 'grab' && r.training.batchOrder === 'interleaved')
    issue(['training', 'batchOrder'], "cannot be interleaved with GraB, which orders the devices by each one's own update to the adapters: use by-device");
}

export const RunSpecSchema = RunSpecFields.superRefine(crossCheck).openapi('RunSpec');

/** POST /runs: the spec, and the run's id if the operator chooses it. */
export const CreateRunSchema = RunSpecFields.extend({ id: z.string().optional().openapi({ description: 'Chosen by the server when not given.' }) })
  .superRefine(crossCheck)
  .openapi('CreateRun');

/** The spec as given in a request: defaults not yet filled in. */
export type RunSpecInput = z.input<typeof RunSpecSchema>;
export type RunSpec = z.output<typeof RunSpecSchema>;
export type DeviceSpec = RunSpec['devices'][number];
export type CapacityProfile = DeviceSpec['profile'];

export function parseRunSpec(value: unknown): RunSpec {
  const parsed = RunSpecSchema.safeParse(value);
  if (!parsed.success) throw new SpecError(describeIssues(parsed.error, value, RunSpecSchema));
  return parsed.data;
}
