/**
 * What a run is and what its rounds report, declared once as schemas: the server's types, what run.json, plan.json
 * and metrics.jsonl hold, and the API's responses in its OpenAPI document.
 */
import { z } from '@hono/zod-openapi';
import { RunSpecSchema } from './spec.ts';

export const RunRecordSchema = z
  .object({
    id: z.string(),
    spec: RunSpecSchema,
    createdAt: z.string(),
    cuts: z
      .record(
        z.string(),
        z.object({
          cut: z.number(),
          memoryMB: z.number().optional(),
          batchSeconds: z.number().optional(),
          planned: z.boolean(),
          unchecked: z
            .string()
            .optional()
            .openapi({ description: "Why the cut was not checked against the owner's approvals at creation (the device did not answer)." }),
        }),
      )
      .openapi({ description: "Each device's cut, and how the planner chose it." }),
    deepestCut: z.number(),
    modelName: z.string(),
    totalSteps: z.number().optional().openapi({ description: 'Optimizer steps the learning-rate schedule spans: rounds x batches, fixed at the first round.' }),
    cancelled: z
      .object({ round: z.number(), at: z.string() })
      .optional()
      .openapi({ description: 'Set when the operator cancelled a round: a restarted server does not resume it; triggering the run again does.' }),
  })
  .openapi('RunRecord');

export const DeviceProgressSchema = z.object({
  cut: z.number(),
  state: z.enum(['waiting', 'training', 'trained', 'failed', 'skipped', 'rolled-back']),
  reused: z.boolean(),
  batches: z.number(),
  uploaded: z
    .number()
    .optional()
    .openapi({ description: "The device's batches in storage so far, as the server lists them (all of them when reused from an earlier round)." }),
  trained: z.number(),
  bytes: z.number(),
  forwardMs: z.number().optional(),
  /** The defence the device's owner set on its uploads, as its manifest names it. */
  defence: z.string().optional(),
  /** Batches refused: by the poller's checks, or by the step guard (a non-finite loss, gradient or update). */
  refused: z.number().optional(),
  error: z.string().optional(),
});

export const RoundProgressSchema = z
  .object({
    round: z.number(),
    phase: z.enum(['planning', 'training', 'evaluating', 'done', 'failed', 'cancelled']),
    order: z.array(z.string()),
    batchesTotal: z.number(),
    batchesTrained: z.number(),
    lastLoss: z.number().optional(),
    losses: z
      .array(z.object({ ms: z.number(), loss: z.number() }))
      .openapi({ description: "Every trained batch's loss, with the milliseconds since the round started." }),
    devices: z.record(z.string(), DeviceProgressSchema),
    rejected: z.array(z.string()).openapi({ description: 'Objects the poller refused, with the reason: never trained on.' }),
    error: z.string().optional(),
  })
  .openapi('RoundProgress');

export const GenerationSampleSchema = z.object({
  prompt: z.string().openapi({ description: 'The held-out prompt (without its few-shot examples).' }),
  promptTokens: z
    .number()
    .int()
    .optional()
    .openapi({ description: "Tokens the model was given: the few-shot examples and the prompt, their start cut where they exceed the model's positions." }),
  generated: z.string(),
  expected: z.string().optional().openapi({ description: "The reference's answer, as OpenAI's grade-school-math extract_answer reads it." }),
  predicted: z.string().optional().openapi({ description: "The answer lm-evaluation-harness's strict-match filter takes ('#### N'), or '[invalid]'." }),
  correct: z.boolean().openapi({ description: 'strict-match exact match' }),
  flexible: z.string().optional().openapi({ description: 'The answer its flexible-extract filter takes (the last number).' }),
  flexibleCorrect: z.boolean().optional().openapi({ description: 'flexible-extract exact match' }),
});

export const RoundMetricsSchema = z
  .object({
    round: z.number(),
    order: z.array(z.string()),
    steps: z.number(),
    trainLoss: z.number(),
    evalLoss: z.number().optional(),
    evalAccuracy: z
      .number()
      .optional()
      .openapi({ description: "Classification accuracy, or generation's exact match by lm-evaluation-harness's gsm8k strict-match filter." }),
    evalExactMatch: z.object({ strict: z.number(), flexible: z.number(), shots: z.number().int().optional() }).optional().openapi({
      description:
        "Generation: exact match by each of lm-evaluation-harness's gsm8k filters (strict-match, flexible-extract), and the few-shot examples before each prompt.",
    }),
    evalRows: z.number(),
    samples: z.array(GenerationSampleSchema).optional(),
    devices: z.array(
      z.object({
        id: z.string(),
        cut: z.number(),
        state: DeviceProgressSchema.shape.state.optional(),
        batches: z.number(),
        refused: z.number().optional(),
        reused: z.boolean(),
        forwardMs: z.number().optional(),
        bytes: z.number(),
        defence: z.string().optional(),
        error: z.string().optional(),
      }),
    ),
    serverTrainMs: z.number(),
    serverIdleMs: z.number(),
    bytesMoved: z.number(),
    wallMs: z.number(),
    rejected: z.number(),
  })
  .openapi('RoundMetrics');

export const PlannedDeviceSchema = z.object({
  cut: z.number(),
  modelSha256: z.string(),
  tokenTableSha256: z.string().optional(),
  weightsSha256: z.string().optional(),
  shards: z.array(z.string()).openapi({ description: "The shards the device runs (those with the task's labels), by name, in this order." }),
  rows: z.number(),
  batches: z.number(),
  fingerprint: z.string().openapi({ description: 'Identifies the activations: shards (by etag), segment, cut, batching and tokenization.' }),
  sourceRound: z.number().openapi({
    description: 'The round whose stored activations are trained on: this one, or an earlier one with the same fingerprint (the activation cache).',
  }),
});

export const RoundPlanSchema = z
  .object({
    round: z.number(),
    order: z.array(z.string()),
    devices: z.record(z.string(), PlannedDeviceSchema),
    skipped: z.record(z.string(), z.string()).openapi({ description: 'Devices left out of this round, with the reason.' }),
    createdAt: z.string(),
  })
  .openapi('RoundPlan');

export type RunRecord = z.infer<typeof RunRecordSchema>;
export type DeviceProgress = z.infer<typeof DeviceProgressSchema>;
export type RoundProgress = z.infer<typeof RoundProgressSchema>;
export type GenerationSample = z.infer<typeof GenerationSampleSchema>;
export type RoundMetrics = z.infer<typeof RoundMetricsSchema>;
export type PlannedDevice = z.infer<typeof PlannedDeviceSchema>;
export type RoundPlan = z.infer<typeof RoundPlanSchema>;
