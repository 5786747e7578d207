/**
 * The operator API's routes, declared once: the server validates requests with them (app.ts), the OpenAPI document
 * (GET /openapi.json) is generated from them, and the CLI's client builds its calls and checks every answer with them
 * (client.ts).
 */
import { createRoute, z } from '@hono/zod-openapi';
import { CreateRunSchema } from '../runs/spec.ts';
import { RUN_STATUSES } from '../runs/summary.ts';
import { RoundMetricsSchema, RoundPlanSchema, RoundProgressSchema, RunRecordSchema } from '../runs/types.ts';

const ErrorSchema = z.object({ error: z.string() }).openapi('Error');
const error = (description: string) => ({ content: { 'application/json': { schema: ErrorSchema } }, description });
const json = <T extends z.ZodType>(schema: T, description: string) => ({ content: { 'application/json': { schema } }, description });
/** Answers every authenticated route may give besides its own. */
const common = {
  401: error('No operator token: send Authorization: Bearer <token>.'),
  403: error('Wrong operator token.'),
  503: error('Storage unavailable; try again.'),
} as const;
const security = [{ operatorToken: [] }];

const RunId = z.object({ id: z.string().openapi({ param: { name: 'id', in: 'path' }, example: 'run-20261203-ab12' }) });
// A path segment is text: a pattern, then a number (z.coerce would document it as optional and nullable).
const RoundNumber = z
  .string()
  .regex(/^(0|[1-9][0-9]*)$/, 'must be a round number (0, 1, ...)')
  .transform(Number)
  .openapi({ param: { name: 'round', in: 'path' }, example: '0' });

export const RunViewSchema = RunRecordSchema.extend({
  running: z.boolean(),
  // A union, not .nullable().openapi(): that would make the RoundProgress component itself nullable wherever it is used.
  progress: z
    .union([RoundProgressSchema, z.null()])
    .openapi({ description: 'The latest round started since the server did: live while it runs; null before any.' }),
  metrics: z.array(RoundMetricsSchema),
}).openapi('RunView');

export const RoundViewSchema = z
  .object({ plan: RoundPlanSchema, progress: RoundProgressSchema.nullable(), metrics: RoundMetricsSchema.nullable() })
  .openapi('RoundView');

export const DeviceViewSchema = z
  .object({
    id: z.string(),
    url: z.string(),
    profile: z.object({ memoryMB: z.number(), gflops: z.number(), maxBatchSeconds: z.number(), weights: z.enum(['fp32', 'int8']) }),
    cut: z.number(),
    planned: z.boolean(),
    memoryMB: z.number().optional(),
    batchSeconds: z.number().optional(),
    unchecked: z.string().optional(),
    reachable: z.boolean(),
    rows: z.number().optional(),
    shards: z.array(z.object({ name: z.string(), rows: z.number() })).optional(),
    error: z.string().optional(),
  })
  .openapi('DeviceView');

export const RunSummarySchema = z
  .object({
    id: z.string(),
    createdAt: z.string(),
    devices: z.number(),
    rounds: z.number().openapi({ description: 'Rounds planned (training.rounds).' }),
    roundsDone: z.number(),
    status: z.enum(RUN_STATUSES).openapi({
      description:
        'running: a round is in progress; failed: its last round failed (trigger resumes it); cancelled: the operator stopped it; done: all planned rounds finished; ready: the next round can be triggered.',
    }),
    accuracy: z
      .number()
      .nullable()
      .openapi({ description: "The last finished round's eval accuracy (generation: strict-match exact match); null before any." }),
  })
  .openapi('RunSummary');

export const routes = {
  createRun: createRoute({
    method: 'post',
    path: '/runs',
    summary: 'Create a run',
    security,
    request: { body: { required: true, content: { 'application/json': { schema: CreateRunSchema } } } },
    responses: {
      201: json(RunRecordSchema, "The run, with each device's cut."),
      400: error('The spec is wrong; the message names the field.'),
      409: error('A run with this id exists, or was deleted and is swept until its upload URLs expire.'),
      ...common,
    },
  }),
  listRuns: createRoute({
    method: 'get',
    path: '/runs',
    summary: 'List runs',
    security,
    responses: { 200: json(z.object({ runs: z.array(RunSummarySchema) }), 'The runs.'), ...common },
  }),
  getRun: createRoute({
    method: 'get',
    path: '/runs/{id}',
    summary: 'A run, its live progress and its metrics',
    security,
    request: { params: RunId },
    responses: { 200: json(RunViewSchema, 'The run.'), 404: error('No such run.'), ...common },
  }),
  deleteRun: createRoute({
    method: 'delete',
    path: '/runs/{id}',
    summary: 'Delete a run and everything stored under it (cancelling its round first)',
    security,
    request: { params: RunId },
    responses: {
      200: json(z.object({ deleted: z.number().openapi({ description: 'Objects removed from storage.' }) }), 'Deleted.'),
      404: error('No such run.'),
      ...common,
    },
  }),
  triggerRound: createRoute({
    method: 'post',
    path: '/runs/{id}/rounds',
    summary: 'Start the next round (or resume an unfinished one)',
    security,
    request: { params: RunId },
    responses: {
      202: json(z.object({ round: z.number() }), 'Started.'),
      404: error('No such run.'),
      409: error('A round is running, or the planned rounds are all done.'),
      ...common,
    },
  }),
  cancelRound: createRoute({
    method: 'post',
    path: '/runs/{id}/cancel',
    summary: 'Stop the running round at its next batch boundary, keeping what trained',
    security,
    request: { params: RunId },
    responses: {
      200: json(
        z.object({ progress: RoundProgressSchema }),
        'Stopped; the adapter of what trained is under the round (without the batches of a device still unmeasured by the loss-rise check).',
      ),
      404: error('No such run.'),
      409: error('No round running.'),
      ...common,
    },
  }),
  getRound: createRoute({
    method: 'get',
    path: '/runs/{id}/rounds/{round}',
    summary: "A round's plan, progress and metrics",
    security,
    request: { params: RunId.extend({ round: RoundNumber }) },
    responses: { 200: json(RoundViewSchema, 'The round.'), 404: error('No such run or round.'), ...common },
  }),
  getMetrics: createRoute({
    method: 'get',
    path: '/runs/{id}/metrics',
    summary: "Every finished round's metrics",
    security,
    request: { params: RunId },
    responses: { 200: json(z.object({ metrics: z.array(RoundMetricsSchema) }), 'The metrics.'), 404: error('No such run.'), ...common },
  }),
  listDevices: createRoute({
    method: 'get',
    path: '/runs/{id}/devices',
    summary: "The run's devices and whether they answer",
    security,
    request: { params: RunId },
    responses: { 200: json(z.object({ devices: z.array(DeviceViewSchema) }), 'The devices.'), 404: error('No such run.'), ...common },
  }),
  getDevice: createRoute({
    method: 'get',
    path: '/runs/{id}/devices/{device}',
    summary: 'One device of the run',
    security,
    request: { params: RunId.extend({ device: z.string().openapi({ param: { name: 'device', in: 'path' } }) }) },
    responses: { 200: json(DeviceViewSchema, 'The device.'), 404: error('No such run or device.'), ...common },
  }),
  getAdapterFile: createRoute({
    method: 'get',
    path: '/runs/{id}/adapters/{round}/{file}',
    summary: "A round's PEFT adapter file (adapter_config.json or adapter_model.safetensors)",
    security,
    request: {
      params: RunId.extend({
        round: z.union([z.literal('latest'), RoundNumber]).openapi({ param: { name: 'round', in: 'path' }, description: 'A round number, or latest.' }),
        file: z.string().openapi({ param: { name: 'file', in: 'path' }, example: 'adapter_config.json' }),
      }),
    },
    responses: {
      200: { content: { 'application/octet-stream': { schema: z.string().openapi({ format: 'binary' }) } }, description: 'The file.' },
      404: error('No such run, round or file.'),
      ...common,
    },
  }),
};
