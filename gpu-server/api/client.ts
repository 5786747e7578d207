/** The operator's client for the server's HTTP API: used by the CLI, `npm start` and the tests. */
import { setTimeout as sleep } from 'node:timers/promises';
import type { RoundMetrics, RoundProgress, RunRecord } from '../runs/manager.ts';
import type { RoundPlan } from '../runs/plan.ts';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export interface RunView extends RunRecord {
  running: boolean;
  progress: RoundProgress | null;
  metrics: RoundMetrics[];
}

export class ServerClient {
  constructor(
    readonly url: string,
    private readonly token: string,
  ) {}

  private async call(method: string, path: string, body?: unknown): Promise<Response> {
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
      const detail = await res.json().then((j: { error?: string }) => j.error, () => res.statusText);
      throw new ApiError(res.status, `${method} ${path}: HTTP ${res.status}: ${detail}`);
    }
    return res;
  }

  private async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    return (await this.call(method, path, body)).json() as Promise<T>;
  }

  createRun(spec: unknown): Promise<RunRecord> {
    return this.json('POST', '/runs', spec);
  }

  runs(): Promise<{ runs: Array<{ id: string; createdAt: string }> }> {
    return this.json('GET', '/runs');
  }

  run(id: string): Promise<RunView> {
    return this.json('GET', `/runs/${id}`);
  }

  async trigger(id: string): Promise<number> {
    return (await this.json<{ round: number }>('POST', `/runs/${id}/rounds`)).round;
  }

  round(id: string, round: number): Promise<{ plan: RoundPlan; progress: RoundProgress | null; metrics: RoundMetrics | null }> {
    return this.json('GET', `/runs/${id}/rounds/${round}`);
  }

  async metrics(id: string): Promise<RoundMetrics[]> {
    return (await this.json<{ metrics: RoundMetrics[] }>('GET', `/runs/${id}/metrics`)).metrics;
  }

  devices(id: string): Promise<{ devices: Array<Record<string, unknown>> }> {
    return this.json('GET', `/runs/${id}/devices`);
  }

  async adapterFile(id: string, round: number | 'latest', file: string): Promise<Uint8Array> {
    return new Uint8Array(await (await this.call('GET', `/runs/${id}/adapters/${round}/${file}`)).arrayBuffer());
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
