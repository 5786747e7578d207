/**
 * The operator's client for the server's HTTP API: used by the CLI, `npm start` and the tests. It builds each call
 * from the route declared in routes.ts and checks each answer against that route's response schema, the same ones
 * the OpenAPI document is made of, so a server and client that drift apart fail loudly.
 */
import type { z } from '@hono/zod-openapi';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeIssues } from '../runs/issues.ts';
import type { RoundMetrics, RoundProgress, RunRecord } from '../runs/types.ts';
import { routes, type DeviceViewSchema, type RoundViewSchema, type RunSummarySchema, type RunViewSchema } from './routes.ts';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export type RunView = z.output<typeof RunViewSchema>;
export type RoundView = z.output<typeof RoundViewSchema>;
export type DeviceView = z.output<typeof DeviceViewSchema>;
type Route = (typeof routes)[keyof typeof routes];

export class ServerClient {
  constructor(
    readonly url: string,
    private readonly token: string,
  ) {}

  private async call(route: Route, params: Record<string, string | number> = {}, body?: unknown): Promise<Response> {
    const method = route.method.toUpperCase();
    const path = route.path.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(String(params[name])));
    const send = () =>
      fetch(new URL(path, this.url), {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    // A GET is retried once after a network error: a server busy in a training step for longer than its keep-alive
    // timeout closes an idle connection just as the next poll reuses it (ECONNRESET).
    const res = await send()
      .catch((e: Error) => (method === 'GET' ? sleep(200).then(send) : Promise.reject(e)))
      .catch((e: Error) => {
        const cause = e.cause instanceof Error ? `: ${e.cause.message}` : '';
        throw new ApiError(0, `cannot reach the server at ${this.url} (${e.message}${cause}): is it running? (npm run server, or SPLITFROZEN_URL)`);
      });
    if (!res.ok) {
      const detail = await res.json().then(
        (j: { error?: string }) => j.error,
        () => res.statusText,
      );
      throw new ApiError(res.status, `${method} ${path}: HTTP ${res.status}: ${detail}`);
    }
    return res;
  }

  /** The answer, checked against the route's declared success schema. */
  private async json<T>(route: Route, params?: Record<string, string | number>, body?: unknown): Promise<T> {
    const res = await this.call(route, params, body);
    const declared = (route.responses as Record<number, { content?: Record<string, { schema: z.ZodType }> }>)[res.status]?.content?.['application/json']
      ?.schema;
    if (!declared) throw new ApiError(res.status, `${route.method.toUpperCase()} ${route.path}: HTTP ${res.status} is not an answer the API declares`);
    const value: unknown = await res.json();
    const parsed = declared.safeParse(value);
    if (!parsed.success)
      throw new ApiError(
        res.status,
        `${route.method.toUpperCase()} ${route.path}: the answer does not match the API's schema: ${describeIssues(parsed.error, value)}`,
      );
    return parsed.data as T;
  }

  /** `spec`: a run spec (RunSpecInput) and optionally its id; the server validates it. */
  createRun(spec: unknown): Promise<RunRecord> {
    return this.json(routes.createRun, {}, spec);
  }

  runs(): Promise<{ runs: Array<z.output<typeof RunSummarySchema>> }> {
    return this.json(routes.listRuns);
  }

  run(id: string): Promise<RunView> {
    return this.json(routes.getRun, { id });
  }

  deleteRun(id: string): Promise<{ deleted: number }> {
    return this.json(routes.deleteRun, { id });
  }

  async trigger(id: string): Promise<number> {
    return (await this.json<{ round: number }>(routes.triggerRound, { id })).round;
  }

  async cancel(id: string): Promise<RoundProgress> {
    return (await this.json<{ progress: RoundProgress }>(routes.cancelRound, { id })).progress;
  }

  round(id: string, round: number): Promise<RoundView> {
    return this.json(routes.getRound, { id, round });
  }

  async metrics(id: string): Promise<RoundMetrics[]> {
    return (await this.json<{ metrics: RoundMetrics[] }>(routes.getMetrics, { id })).metrics;
  }

  devices(id: string): Promise<{ devices: DeviceView[] }> {
    return this.json(routes.listDevices, { id });
  }

  device(id: string, device: string): Promise<DeviceView> {
    return this.json(routes.getDevice, { id, device });
  }

  async adapterFile(id: string, round: number | 'latest', file: string): Promise<Uint8Array> {
    return new Uint8Array(await (await this.call(routes.getAdapterFile, { id, round, file })).arrayBuffer());
  }

  /** Polls until the run has no round in progress, calling `onProgress` with what the server reports. */
  async waitIdle(id: string, onProgress?: (run: RunView) => void, intervalMs = 300): Promise<RunView> {
    for (;;) {
      const run = await this.run(id);
      onProgress?.(run);
      if (!run.running) return run;
      await sleep(intervalMs);
    }
  }
}
