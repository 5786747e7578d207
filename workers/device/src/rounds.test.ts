import { rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceSecret, sha256Hex, signRequest } from '../../../core/auth/signing.ts';
import { gpt2Config } from '../../../core/model/gpt2/config.ts';
import { initModel } from '../../../core/model/gpt2/init.ts';
import type { GPT2Model } from '../../../core/model/gpt2/weights.ts';
import { deviceSegment, type DeviceSegment } from '../../../core/onnx/segment.ts';
import { LEVELS } from '../../../core/privacy/defence.ts';
import { GPT2Tokenizer } from '../../../core/tokenizer/gpt2.ts';
import type { RoundRequest, RoundStatus } from '../../../core/wire/round.ts';
import { startDevice, type RunningDevice } from '../../../infra/local/device.ts';
import { localTempDir } from '../../../infra/local/paths.ts';

// Rounds on the device worker under workerd, against a storage server that can redirect: what the device fetches,
// what it runs, and what its status tells the server when a round fails.
const SECRET = 'round-secret';
const ROWS = [
  { text: 'my pin is 4721 and my password is zebra', label: 1 },
  { text: 'a dull film', label: 0 },
  { text: 'fine acting', label: 1 },
];

/** A plain HTTP server on 127.0.0.1: GETs what `files` holds, keeps what is PUT, and logs every request. */
interface Storage {
  server: Server;
  origin: string;
  files: Map<string, Uint8Array>;
  log: string[];
}

async function startStorage(redirectTo?: () => string): Promise<Storage> {
  const files = new Map<string, Uint8Array>();
  const log: string[] = [];
  const server = createServer(async (req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const path = new URL(req.url!, 'http://x').pathname;
    log.push(`${req.method} ${path}`);
    if (redirectTo && path.startsWith('/redirect/')) {
      res.writeHead(302, { location: `${redirectTo()}/${path.slice('/redirect/'.length)}` }).end();
    } else if (req.method === 'PUT') {
      files.set(path, Buffer.concat(chunks));
      res.writeHead(200).end();
    } else if (files.has(path)) {
      res.writeHead(200, { 'content-length': files.get(path)!.byteLength }).end(files.get(path));
    } else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { server, origin: `http://127.0.0.1:${port}`, files, log };
}

let dir: string;
let storage: Storage;
let elsewhere: Storage;
let device: RunningDevice;
let secret: string;

const config = gpt2Config({ nLayer: 3, nEmbd: 32, nHead: 4, nPositions: 64 });
const model = initModel(config, { seed: 1, paramNoise: 0.1 });
// The same graph with other weights: negated matrices quantize with the same scales, so only the external data differs.
const negated = {
  ...model,
  params: new Map([...model.params].map(([name, w]) => [name, /\.(c_attn|c_proj|c_fc)\.weight$/.test(name) ? w.map((v) => -v) : w])),
} as GPT2Model;
const ids = new GPT2Tokenizer().encodeBatch(
  ROWS.map((r) => r.text),
  { maxLength: 16, padTokenId: 0 },
).ids;
// A model whose vocabulary ends at one of the shard's own token ids: the round fails on that id.
const PRIVATE_ID = Math.max(...ids);
const small = initModel(gpt2Config({ nLayer: 3, nEmbd: 32, nHead: 4, nPositions: 64, vocabSize: PRIVATE_ID, padTokenId: 0 }), { seed: 2, paramNoise: 0.1 });
let segments: Record<'a' | 'b' | 'small', DeviceSegment>;

beforeAll(async () => {
  dir = await localTempDir('test-device-rounds');
  elsewhere = await startStorage();
  storage = await startStorage(() => elsewhere.origin);
  device = await startDevice({
    id: 'device-r',
    ownerToken: 'owner',
    masterSecret: SECRET,
    storageOrigins: [storage.origin],
    stateDir: join(dir, 'device'),
    vars: { UPLOAD_ATTEMPTS: '2', UPLOAD_BACKOFF_MS: '10' },
  });
  secret = await deviceSecret(SECRET, 'device-r');
  await device.uploadShard('private', ROWS, ['0', '1']);
  segments = { a: await deviceSegment(model, 2, 'int8'), b: await deviceSegment(negated, 2, 'int8'), small: await deviceSegment(small, 2, 'int8') };
  expect([segments.b.sha256, segments.b.tokenTable!.sha256]).toEqual([segments.a.sha256, segments.a.tokenTable!.sha256]);
  for (const [name, s] of Object.entries(segments)) {
    // Served by both: a device that followed a redirect would get what it asked for, and no error would tell.
    for (const at of [storage, elsewhere]) {
      at.files.set(`/${name}/graph`, s.onnx);
      at.files.set(`/${name}/weights`, s.weights!.bytes);
      at.files.set(`/${name}/table`, s.tokenTable!.bytes);
    }
  }
});

afterAll(async () => {
  await device?.stop();
  for (const s of [storage, elsewhere]) s?.server.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function approve(segment: keyof typeof segments): Promise<void> {
  const s = segments[segment];
  await device.approve({ sha256: s.sha256, model: 'tiny-gpt2', cut: 2, tokenTable: s.tokenTable!.sha256, weights: s.weights!.sha256, defence: LEVELS.off });
}

type Paths = Partial<Record<'graph' | 'weights' | 'table' | 'batch' | 'manifest', string>>;

/** A round of `segment` as the server would ask for it; `paths` may point any URL elsewhere (a redirect). */
function request(runId: string, segment: keyof typeof segments, paths: Paths = {}): RoundRequest {
  const s = segments[segment];
  const url = (what: keyof Paths, plain: string) => `${storage.origin}${paths[what] ?? plain}`;
  return {
    runId,
    round: 0,
    task: 'classification',
    cut: 2,
    batchSize: 2,
    seqLen: 16,
    dtype: 'fp32',
    labels: ['0', '1'],
    padTokenId: 0,
    model: { sha256: s.sha256, url: url('graph', `/${segment}/graph`) },
    weights: { sha256: s.weights!.sha256, url: url('weights', `/${segment}/weights`) },
    tokenTable: { sha256: s.tokenTable!.sha256, url: url('table', `/${segment}/table`) },
    uploads: { batches: [url('batch', `/${runId}/0`), `${storage.origin}/${runId}/1`], manifest: url('manifest', `/${runId}/manifest`) },
  };
}

/** Starts a round, signed as the server, and waits for it to end. */
async function run(r: RoundRequest): Promise<RoundStatus> {
  const body = JSON.stringify(r);
  const started = await fetch(new URL('/rounds', device.url), {
    method: 'POST',
    headers: await signRequest(secret, 'device-r', 'POST', '/rounds', body),
    body,
  });
  expect(started.status, await started.clone().text()).toBe(202);
  for (const deadline = Date.now() + 60_000; Date.now() < deadline; await new Promise((resolve) => setTimeout(resolve, 100))) {
    const path = `/rounds/${r.runId}/0`;
    const status = (await (await fetch(new URL(path, device.url), { headers: await signRequest(secret, 'device-r', 'GET', path) })).json()) as RoundStatus;
    if (status.state !== 'running') return status;
  }
  throw new Error(`round ${r.runId} still running`);
}

describe('rounds on the device', () => {
  it('follows no redirect off its storage origins: the round fails naming the URL, and the target is never contacted', async () => {
    await approve('a');
    const cases: Array<[keyof Paths, string]> = [
      ['graph', 'model.url'],
      ['weights', 'weights.url'],
      ['table', 'tokenTable.url'],
      ['batch', 'upload of batch 0: uploads.batches[0]'],
      ['manifest', 'upload of the manifest: uploads.manifest'],
    ];
    for (const [what, field] of cases) {
      const path = what === 'batch' || what === 'manifest' ? `/redirect/run-${what}/${what}` : `/redirect/a/${what}`;
      const status = await run(request(`run-redirect-${what}`, 'a', { [what]: path }));
      expect([status.state, status.error], what).toEqual(['failed', `${field}: storage answered HTTP 302, a redirect, which this device never follows`]);
      expect(storage.log, what).toContain(`${what === 'batch' || what === 'manifest' ? 'PUT' : 'GET'} ${path}`);
    }
    expect(elsewhere.log).toEqual([]);
  });

  it('tells the server which step failed, never the token ids or text the failure was about', async () => {
    await approve('small');
    const status = await run(request('run-private-id', 'small'));
    expect(status.state).toBe('failed');
    // What the token table says of the id (`token id ${PRIVATE_ID} is outside the vocabulary`) stays on the device.
    expect(status.error).toBe("token table: a token id of the shard is outside the table's vocabulary");
    expect(JSON.stringify(status)).not.toContain(String(PRIVATE_ID));
    expect(JSON.stringify(status)).not.toContain('zebra');
  });

  it('runs a graph with the weights each round names, never a session made with other weights', async () => {
    await approve('a');
    expect((await run(request('run-weights-a', 'a'))).state).toBe('complete');
    await approve('b');
    const fetched = storage.log.length;
    expect((await run(request('run-weights-b', 'b'))).state).toBe('complete');
    expect(storage.log.slice(fetched)).toContain('GET /b/weights');
    expect(await sha256Hex(storage.files.get('/run-weights-b/0')!)).not.toBe(await sha256Hex(storage.files.get('/run-weights-a/0')!));
  });
});
