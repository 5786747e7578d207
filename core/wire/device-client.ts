/** The training server's side of the device API: signed calls to a device worker. */
import { deviceSecret, signRequest } from '../auth/signing.ts';
import { readUpTo } from '../streams/read-up-to.ts';
import { parseDevicePolicy, parseRoundStatus, parseShardListing, type ShardSummary } from './answers.ts';
import type { DevicePolicy } from './policy.ts';
import type { RoundRequest, RoundStatus } from './round.ts';
import { untrustedText } from './untrusted.ts';

/** The largest answer read from a device: a listing of a thousand shards is well under it. */
export const MAX_ANSWER_BYTES = 4 * 1024 * 1024;

export type { ShardSummary } from './answers.ts';

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

  /** A signed call; the answer is read up to MAX_ANSWER_BYTES and returned unchecked, for the caller's schema. */
  private async call(method: string, path: string, body?: unknown): Promise<unknown> {
    const text = body === undefined ? '' : JSON.stringify(body);
    const headers = {
      ...(await signRequest(await this.secret, this.device, method, path, text)),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    };
    // A device that never answers must not hold the server: every call has a deadline. Nor may it send the server's
    // signed request elsewhere: redirects are refused.
    const res = await fetch(new URL(path, this.url), {
      method,
      headers,
      body: body === undefined ? undefined : text,
      signal: AbortSignal.timeout(this.timeoutMs),
      redirect: 'error',
    });
    const answer = await readJson(res, `device ${this.device} ${method} ${path}`);
    if (!res.ok)
      throw new DeviceError(
        res.status,
        `device ${this.device} ${method} ${path}: HTTP ${res.status}: ${untrustedText((answer as { error?: unknown } | undefined)?.error ?? 'no details')}`,
      );
    return answer;
  }

  async shards(): Promise<ShardSummary[]> {
    return parseShardListing(await this.call('GET', '/shards'));
  }

  /** What the device's owner allows: minimum cut and approved segments. */
  async policy(): Promise<DevicePolicy> {
    return parseDevicePolicy(await this.call('GET', '/approvals'));
  }

  async startRound(request: RoundRequest): Promise<RoundStatus> {
    return parseRoundStatus(await this.call('POST', '/rounds', request), { device: this.device, runId: request.runId, round: request.round });
  }

  async roundStatus(runId: string, round: number): Promise<RoundStatus> {
    return parseRoundStatus(await this.call('GET', `/rounds/${encodeURIComponent(runId)}/${round}`), { device: this.device, runId, round });
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

/** A device's JSON answer, read up to MAX_ANSWER_BYTES (a longer one is cut off, not read); undefined when not JSON. */
async function readJson(res: Response, what: string): Promise<unknown> {
  const declared = Number(res.headers.get('content-length') ?? 0);
  if (declared > MAX_ANSWER_BYTES) {
    await res.body?.cancel();
    throw new DeviceError(res.status, `${what}: answer of ${declared} bytes, more than the ${MAX_ANSWER_BYTES} any answer needs`);
  }
  const bytes = res.body ? await readUpTo(res.body, MAX_ANSWER_BYTES) : new Uint8Array(0);
  if (!bytes) throw new DeviceError(res.status, `${what}: answer longer than the ${MAX_ANSWER_BYTES} bytes any answer needs`);
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return undefined;
  }
}
