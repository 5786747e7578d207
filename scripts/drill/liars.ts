/**
 * Lying devices for the drill: each is its own HTTP server on 127.0.0.1 speaking the device API (it ignores the
 * server's signatures, as a device that lies would) and lying in one way: in its listing, its answers, its timing, or
 * the objects it writes through the round's presigned URLs. The objects are well-formed where the lie is elsewhere,
 * so each case tests one check.
 */
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { sha256Hex } from '../../core/auth/signing.ts';
import { Random } from '../../core/random.ts';
import { serializeSafetensors } from '../../core/tensors/safetensors.ts';
import { encodeActivationBatch, type ActivationBatch } from '../../core/wire/activations.ts';
import type { ActivationManifest, RoundRequest } from '../../core/wire/round.ts';

/** A batch as the liar would upload it, and the manifest over all of them, each open to the case's lie. */
interface Upload {
  batch(r: RoundRequest, b: ActivationBatch): Uint8Array;
  manifest(m: ActivationManifest): unknown;
}

export interface LiarCase {
  kind: string;
  /** What GET /shards answers (default: one honest-looking shard of LIAR_ROWS rows). */
  listing?: () => string;
  /** Answers nothing at all, to any call. */
  silent?: boolean;
  /** GET /shards is redirected (to a URL the server must not follow). */
  redirect?: boolean;
  /** After accepting the round: 'stall' uploads nothing; 'late' uploads once the server's deadline has passed. */
  timing?: 'stall' | 'late';
  /** The round's status says it failed, with this text. */
  failWith?: string;
  upload?: Partial<Upload>;
  /** After the honest-looking upload, each batch is overwritten through its still-valid URL with this many bytes. */
  swapBytes?: number;
}

export const LIAR_ROWS = 16;
const listing = (rows: number) => () => JSON.stringify({ shards: [{ name: 'lies', rows, task: 'classification', labels: ['0', '1'], etag: 'x' }] });
const forged = `failed\n[server] run drill: round 0: trained 99 batches\u001b[2J\u001b[31m${'\u0007x'.repeat(128 * 1024)}`;

export const LIAR_CASES: LiarCase[] = [
  { kind: 'huge finite values (3e38)', upload: { batch: (r, b) => encode(r, { ...b, hidden: b.hidden.fill(3e38) }) } },
  { kind: 'NaN and infinities', upload: { batch: (r, b) => encode(r, { ...b, hidden: b.hidden.fill(b.index ? Infinity : NaN, 0, 5) }) } },
  {
    kind: 'wrong hidden size',
    upload: { batch: (r, b) => encode(r, { ...b, nEmbd: b.nEmbd + 1, hidden: new Float32Array((b.hidden.length / b.nEmbd) * (b.nEmbd + 1)) }) },
  },
  { kind: 'F64 hidden states', upload: { batch: (_, b) => f64(b) } },
  { kind: 'oversize objects (64 MB)', upload: { batch: () => new Uint8Array(64 * 1024 * 1024) } },
  { kind: 'objects swapped after the listing (64 MB)', swapBytes: 64 * 1024 * 1024 },
  { kind: 'labels outside the task', upload: { batch: (r, b) => encode(r, { ...b, labels: b.labels.fill(7) }) } },
  { kind: 'a replayed batch of an old round', upload: { batch: (r, b) => encode(r, { ...b, round: b.round + 5 }) } },
  { kind: "another device's batches", upload: { batch: (r, b) => encode(r, { ...b, device: 'device-1' }) } },
  { kind: 'a manifest claiming 4M rows', upload: { manifest: (m) => ({ ...m, rows: 4_000_000 }) } },
  { kind: 'listing answered {}', listing: () => '{}' },
  { kind: 'garbage listing', listing: () => '\u0000\u00ff not json at all' },
  { kind: '400k rows claimed', listing: listing(400_000) },
  { kind: '4M rows claimed', listing: listing(4_000_000) },
  { kind: 'negative rows claimed', listing: listing(-400_000) },
  { kind: 'never answers', silent: true },
  { kind: 'redirects its answers', redirect: true },
  { kind: 'stalls after accepting', timing: 'stall' },
  { kind: 'answers after the deadline', timing: 'late' },
  { kind: 'huge error text with control characters', failWith: forged },
];

export interface RunningLiar {
  id: string;
  url: string;
  kind: string;
  stop(): Promise<void>;
}

/** The objects an honest device of width `nEmbd` would upload for the request, lied about as the case says. */
async function uploadRound(r: RoundRequest, id: string, nEmbd: number, c: LiarCase): Promise<void> {
  const rng = new Random(7);
  const batches = [];
  for (let i = 0; i < r.uploads.batches.length; i++) {
    const rows = Math.min(r.batchSize, LIAR_ROWS - i * r.batchSize);
    const seqLen = Math.min(r.seqLen, 8);
    // Small values: within the bound a model's own hidden states set, so only the case's lie is wrong.
    const hidden = Float32Array.from({ length: rows * seqLen * nEmbd }, () => rng.normal() * 0.01);
    const b: ActivationBatch = {
      device: id,
      runId: r.runId,
      round: r.round,
      cut: r.cut,
      index: i,
      rows,
      seqLen,
      nEmbd,
      hidden,
      mask: new Int32Array(rows * seqLen).fill(1),
      labels: Int32Array.from({ length: rows }, (_, j) => j % 2),
    };
    const bytes = (c.upload?.batch ?? encode)(r, b);
    await put(r.uploads.batches[i], bytes);
    batches.push({ index: i, rows, seqLen, bytes: bytes.byteLength, sha256: await sha256Hex(bytes) });
  }
  const manifest: ActivationManifest = {
    version: 1,
    device: id,
    runId: r.runId,
    round: r.round,
    cut: r.cut,
    dtype: r.dtype,
    modelSha256: r.model.sha256,
    rows: LIAR_ROWS,
    defence: { mechanism: 'none' },
    batches,
  };
  await put(r.uploads.manifest, JSON.stringify(c.upload?.manifest?.(manifest) ?? manifest));
  if (c.swapBytes) {
    // The URLs stay valid for an hour: the liar swaps its objects once the server has listed them.
    await sleep(300);
    for (const url of r.uploads.batches) await put(url, new Uint8Array(c.swapBytes));
  }
}

const encode = (r: RoundRequest, b: ActivationBatch) => encodeActivationBatch(b, r.dtype);

function f64(b: ActivationBatch): Uint8Array {
  return serializeSafetensors(
    {
      hidden_states: { dtype: 'F64', shape: [b.rows, b.seqLen, b.nEmbd], data: Float64Array.from(b.hidden) },
      attention_mask: { dtype: 'I32', shape: [b.rows, b.seqLen], data: b.mask },
      labels: { dtype: 'I32', shape: [b.rows], data: b.labels },
    },
    { device: b.device, run: b.runId, round: String(b.round), cut: String(b.cut), batch: String(b.index) },
  );
}

async function put(url: string, body: Uint8Array | string): Promise<void> {
  const res = await fetch(url, { method: 'PUT', body: body as BodyInit });
  if (!res.ok) throw new Error(`PUT ${url.split('?')[0]}: HTTP ${res.status}`);
}

/**
 * Starts the liar for a case. `segment`: the approval it claims for the run's segment; `lateMs`: how long after
 * accepting a late liar uploads: long enough that the server's deadline has passed wherever its turn falls.
 */
export async function startLiar(id: string, c: LiarCase, o: { nEmbd: number; segment: { sha256: string; cut: number }; lateMs: number }): Promise<RunningLiar> {
  const app = new Hono();
  const rounds = new Map<string, { state: string; error?: string }>();
  const work: Array<Promise<unknown>> = [];
  // Stopping the liar ends a late upload still waiting for its time.
  const stopping = new AbortController();
  if (c.silent) app.all('*', () => new Promise<Response>(() => {}));
  if (c.redirect) app.all('*', (ctx) => ctx.redirect('http://127.0.0.1:9/collect', 302));
  app.get('/shards', (ctx) => ctx.body((c.listing ?? listing(LIAR_ROWS))(), 200, { 'content-type': 'application/json' }));
  app.get('/approvals', (ctx) => ctx.json({ minCut: 1, approvals: [{ ...o.segment, model: 'drill-model' }], defence: 'off' }));
  app.post('/rounds', async (ctx) => {
    const r = (await ctx.req.json()) as RoundRequest;
    const key = `${r.runId}/${r.round}`;
    const status = { state: 'running' } as { state: string; error?: string };
    rounds.set(key, status);
    if (c.failWith) Object.assign(status, { state: 'failed', error: c.failWith });
    else if (c.timing !== 'stall') {
      const done = (c.timing === 'late' ? sleep(o.lateMs, undefined, { signal: stopping.signal }) : Promise.resolve()).then(() =>
        uploadRound(r, id, o.nEmbd, c),
      );
      work.push(done.then(() => (status.state = 'complete')).catch((e: Error) => Object.assign(status, { state: 'failed', error: e.message })));
    }
    return ctx.json({
      device: id,
      runId: r.runId,
      round: r.round,
      batchesDone: 0,
      batchesTotal: r.uploads.batches.length,
      failures: c.failWith ? [c.failWith] : [],
      tokens: 0,
      forwardMs: 0,
      ...status,
    });
  });
  app.get('/rounds/:run/:round', (ctx) => {
    const s = rounds.get(`${ctx.req.param('run')}/${ctx.req.param('round')}`);
    return s
      ? ctx.json({ batchesDone: 0, batchesTotal: 2, failures: s.error ? [s.error] : [], tokens: 0, forwardMs: 0, ...s })
      : ctx.json({ error: 'no such round' }, 404);
  });
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
  });
  return {
    id,
    kind: c.kind,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stop: async () => {
      stopping.abort();
      await Promise.allSettled(work);
      (server as import('node:http').Server).closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
