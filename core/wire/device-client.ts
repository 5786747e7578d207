/** The training server's side of the device API: signed calls to a device worker. */
import { deviceSecret, signRequest } from '../auth/signing.ts';
import type { DevicePolicy } from './policy.ts';
import type { RoundRequest, RoundStatus, RoundTask } from './round.ts';

export interface ShardSummary {
  name: string;
  rows: number;
  /** The shard's task (devices before generation existed list none: classification). */
  task?: RoundTask;
  labels: string[];
  /** Changes whenever the shard's content does. */
  etag: string;
}

export class DeviceError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'DeviceError';
  }
}

export class DeviceClient {
  private readonly secret: Promise<string>;

  /** `masterSecret`: the server's; the device's own secret is derived from it and the device's id. */
  constructor(
    readonly url: string | URL,
    readonly device: string,
    masterSecret: string,
    private readonly timeoutMs = 30_000,
  ) {
    this.secret = deviceSecret(masterSecret, device);
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const text = body === undefined ? '' : JSON.stringify(body);
    const headers = { ...(await signRequest(await this.secret, this.device, method, path, text)), ...(body === undefined ? {} : { 'content-type': 'application/json' }) };
    // A device that never answers must not hold the server: every call has a deadline.
    const res = await fetch(new URL(path, this.url), { method, headers, body: body === undefined ? undefined : text, signal: AbortSignal.timeout(this.timeoutMs) });
    const json = (await res.json().catch(() => ({}))) as T & { error?: string };
    if (!res.ok) throw new DeviceError(res.status, `device ${this.url} ${method} ${path}: HTTP ${res.status}: ${json.error ?? 'no details'}`);
    return json;
  }

  async shards(): Promise<ShardSummary[]> {
    return (await this.call<{ shards: ShardSummary[] }>('GET', '/shards')).shards;
  }

  /** What the device's owner allows: minimum cut and approved segments. */
  policy(): Promise<DevicePolicy> {
    return this.call('GET', '/approvals');
  }

  startRound(request: RoundRequest): Promise<RoundStatus> {
    return this.call('POST', '/rounds', request);
  }

  roundStatus(runId: string, round: number): Promise<RoundStatus> {
    return this.call('GET', `/rounds/${encodeURIComponent(runId)}/${round}`);
  }

  /** Polls until the round is no longer running. */
  async waitForRound(runId: string, round: number, { intervalMs = 200, timeoutMs = 120_000 } = {}): Promise<RoundStatus> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      // A device that is busy or restarting may miss a call or two; only the deadline ends the wait.
      const status = await this.roundStatus(runId, round).catch((e: Error) => {
        if (e instanceof DeviceError || Date.now() > deadline) throw e;
        return undefined;
      });
      if (status && status.state !== 'running') return status;
      if (Date.now() > deadline) throw new Error(`round ${round} of run ${runId} on ${this.url} still running after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }
}
