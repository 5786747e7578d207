/**
 * A device round end to end on real parts: a device worker under workerd, the s3rver S3 server (behind a proxy that
 * can fail requests), and a tiny GPT-2. The activations the device stores must equal the same prefix run on
 * onnxruntime-node over the same tokens.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { deviceSecret, sha256Hex, signRequest } from '../core/auth/signing.ts';
import { gpt2Config } from '../core/model/gpt2/config.ts';
import { initModel } from '../core/model/gpt2/init.ts';
import { exportPrefix, PREFIX_OUTPUT } from '../core/onnx/prefix.ts';
import { deviceSegment } from '../core/onnx/segment.ts';
import { lookupTokens, tokenTable, tokenTableTensors } from '../core/onnx/embedding.ts';
import { serializeSafetensors } from '../core/tensors/safetensors.ts';
import { keys } from '../core/storage/keys.ts';
import { S3Store } from '../core/storage/s3.ts';
import { encodeRows } from '../workers/device/src/encode.ts';
import { GPT2Tokenizer } from '../core/tokenizer/gpt2.ts';
import { decodeActivationBatch } from '../core/wire/activations.ts';
import { DeviceClient } from '../core/wire/device-client.ts';
import type { ActivationManifest, RoundRequest } from '../core/wire/round.ts';
import { buildRoundRequest, type DeviceRoundPlan } from '../gpu-server/rounds/request.ts';
import { startDevice, type RunningDevice } from '../infra/local/device.ts';
import { startS3, type RunningS3 } from '../infra/local/s3.ts';
import { startFaultProxy, type FaultProxy } from '../infra/local/fault-proxy.ts';
import { maxAbsDiff, paddingZeroed, wholeBatchQuantizedSegment } from './fixtures.ts';

// One thread, as a Worker runs it.
ortWeb.env.wasm.numThreads = 1;
import { localTempDir } from '../infra/local/paths.ts';
import { CALIBRATION_SEQ_LEN, CALIBRATION_TEXTS, calibrationClip } from '../core/privacy/defend.ts';
import { canonicalDefence, gaussianScale, LEVELS } from '../core/privacy/defence.ts';

const SECRET = 'round-secret';
const CUT = 2;
const config = gpt2Config({ nLayer: 3, nEmbd: 32, nHead: 4, nPositions: 64, numLabels: 3 });
const model = initModel(config, { seed: 4, paramNoise: 0.1 });
const onnx = exportPrefix(model, { cut: CUT });
const ROWS = [
  { text: 'A man is playing a guitar.', text_pair: 'Someone plays music.', label: 'entailment' },
  { text: 'The cat sleeps.', text_pair: 'The cat is running around the garden very fast.', label: 'contradiction' },
  { text: 'Stocks rose on Tuesday.', text_pair: 'Markets moved.', label: 'neutral' },
  { text: 'It rained all day in the city and the streets flooded near the river.', text_pair: 'Weather was bad.', label: 'entailment' },
  { text: 'She reads.', text_pair: 'She is asleep.', label: 'contradiction' },
];
const LABELS = ['entailment', 'neutral', 'contradiction'];

let dir: string;
let s3: RunningS3;
let proxy: FaultProxy;
let store: S3Store;
let viaProxy: S3Store;
let device: RunningDevice;
let client: DeviceClient;
let modelSha: string;

beforeAll(async () => {
  dir = await localTempDir('test-round');
  s3 = await startS3({ directory: join(dir, 's3') });
  proxy = await startFaultProxy(s3.config.endpoint!);
  store = new S3Store(s3.config);
  // URLs handed to the device point at the proxy, so a test can make its uploads fail.
  viaProxy = new S3Store({ ...s3.config, endpoint: proxy.url });
  device = await startDevice({
    id: 'dev-a',
    ownerToken: 'owner',
    masterSecret: SECRET,
    storageOrigins: [new URL(proxy.url).origin],
    stateDir: join(dir, 'dev-a'),
    vars: { PIECE_BATCHES: '1', UPLOAD_ATTEMPTS: '3', UPLOAD_BACKOFF_MS: '20', LABELS: LABELS.join(',') },
  });
  client = new DeviceClient(device.url, 'dev-a', SECRET);
  const body = ROWS.map((r) => JSON.stringify(r)).join('\n');
  const up = await fetch(new URL('/shards/nli?format=jsonl', device.url), { method: 'PUT', headers: { authorization: 'Bearer owner' }, body });
  expect(up.status).toBe(201);
  modelSha = await sha256Hex(onnx);
  await store.put(keys.devicePrefix(modelSha, CUT), onnx);
  // As its owner would: approve the segment after checking it (here: the same export from the same model). Off: these
  // tests compare the uploads with the prefix's own output; 'the owner's defence' below sets one.
  await device.approve({ sha256: modelSha, model: 'tiny-gpt2', cut: CUT, defence: LEVELS.off });
});

afterAll(async () => {
  await device?.stop();
  await proxy?.close();
  await s3?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function plan(runId: string, overrides: Partial<DeviceRoundPlan> = {}): Promise<RoundRequest> {
  return buildRoundRequest(viaProxy, {
    runId,
    round: 0,
    deviceId: 'dev-a',
    modelSha256: modelSha,
    cut: CUT,
    rows: ROWS.length,
    batchSize: 2,
    seqLen: 12,
    dtype: 'fp32',
    labels: LABELS,
    padTokenId: 50256,
    ...overrides,
  });
}

/** The int8 segment as a device runs it (graph, external weights, token table outside), stored and approved. */
async function approvedInt8Segment() {
  const seg = await deviceSegment(model, CUT, 'int8');
  await store.put(keys.devicePrefix(seg.sha256, CUT), seg.onnx);
  await store.put(keys.segmentWeights(seg.weights!.sha256), seg.weights!.bytes);
  await store.put(keys.tokenTable(seg.tokenTable!.sha256), seg.tokenTable!.bytes);
  await device.approveSegment(model, 'tiny-gpt2', CUT, 'int8', { defence: LEVELS.off });
  return seg;
}

async function runRound(request: RoundRequest) {
  await client.startRound(request);
  return client.waitForRound(request.runId, request.round);
}

async function storedKeys(runId: string): Promise<string[]> {
  const out = [];
  for await (const o of store.list(`runs/${runId}/`)) out.push(o.key);
  return out;
}

/** The tokens a device runs a pair shard's rows on: each pair whole, cut at seqLen from the right (encode.test.ts). */
const pairTokens = (rows: typeof ROWS, seqLen: number, padTokenId: number) =>
  encodeRows(
    new GPT2Tokenizer(),
    rows.map((r) => ({ text: r.text, textPair: r.text_pair, label: 0 })),
    { task: 'classification', seqLen, padTokenId },
  );

/** The same prefix on onnxruntime-node, on the same tokens the device should have used. */
async function expectedHidden(rows: typeof ROWS, seqLen: number, padTokenId: number, pairs = true) {
  const enc = pairs
    ? pairTokens(rows, seqLen, padTokenId)
    : new GPT2Tokenizer().encodeBatch(
        rows.map((r) => r.text),
        { maxLength: seqLen, padTokenId },
      );
  const session = await ort.InferenceSession.create(onnx);
  const shape = [enc.rows, enc.seqLen];
  const out = await session.run({
    input_ids: new ort.Tensor('int64', BigInt64Array.from(enc.ids, BigInt), shape),
    attention_mask: new ort.Tensor('int64', BigInt64Array.from(enc.attentionMask, BigInt), shape),
  });
  return { hidden: out[PREFIX_OUTPUT].data as Float32Array, mask: enc.attentionMask, seq: enc.seqLen };
}

describe('a device round on workerd and S3', () => {
  it('stores activations equal to onnxruntime-node on the same tokens, and a manifest whose checksums verify', async () => {
    const request = await plan('run-ok');
    const status = await runRound(request);
    expect(status).toMatchObject({ state: 'complete', batchesDone: 3, batchesTotal: 3, failures: [] });
    expect(status.forwardMs).toBeGreaterThan(0);
    // The Worker's own figure of its memory: onnxruntime's WebAssembly heap, whole 64 KB pages.
    expect(status.wasmMemoryBytes! % 65536).toBe(0);
    expect(status.wasmMemoryBytes).toBeGreaterThan(0);
    const manifest = JSON.parse(new TextDecoder().decode(await store.get(keys.activationManifest('run-ok', 'dev-a', 0)))) as ActivationManifest;
    expect(manifest).toMatchObject({ device: 'dev-a', runId: 'run-ok', round: 0, cut: CUT, dtype: 'fp32', modelSha256: modelSha, rows: 5 });
    expect(manifest.batches.map((b) => b.rows)).toEqual([2, 2, 1]);
    let tokens = 0;
    for (const entry of manifest.batches) {
      const bytes = (await store.get(keys.activationBatch('run-ok', 'dev-a', 0, entry.index)))!;
      expect(bytes.byteLength).toBe(entry.bytes);
      expect(await sha256Hex(bytes)).toBe(entry.sha256);
      const batch = decodeActivationBatch(bytes);
      expect(batch).toMatchObject({
        device: 'dev-a',
        runId: 'run-ok',
        round: 0,
        cut: CUT,
        index: entry.index,
        rows: entry.rows,
        seqLen: entry.seqLen,
        nEmbd: config.nEmbd,
      });
      const rows = ROWS.slice(entry.index * 2, entry.index * 2 + 2);
      expect(Array.from(batch.labels)).toEqual(rows.map((r) => LABELS.indexOf(r.label)));
      const want = await expectedHidden(rows, request.seqLen, request.padTokenId);
      expect(batch.seqLen).toBe(want.seq);
      expect(Array.from(batch.mask)).toEqual(Array.from(want.mask));
      expect(maxAbsDiff(batch.hidden, paddingZeroed(want.hidden, want.mask, config.nEmbd))).toBeLessThan(1e-5);
      tokens += want.mask.reduce((a, m) => a + m, 0);
    }
    expect(status.tokens).toBe(tokens);
  });

  it('stores fp16 activations at half the size, equal to fp32 within fp16 rounding', async () => {
    expect((await runRound(await plan('run-fp16', { dtype: 'fp16' }))).state).toBe('complete');
    const half = decodeActivationBatch((await store.get(keys.activationBatch('run-fp16', 'dev-a', 0, 0)))!);
    const full = decodeActivationBatch((await store.get(keys.activationBatch('run-ok', 'dev-a', 0, 0)))!);
    const scale = Math.max(...full.hidden.map(Math.abs));
    expect(maxAbsDiff(half.hidden, full.hidden)).toBeLessThan(scale * 1e-3);
    const size = async (run: string) => (await store.head(keys.activationBatch(run, 'dev-a', 0, 0)))!.size;
    expect(await size('run-fp16')).toBeLessThan((await size('run-ok')) * 0.6);
  });

  it('runs an int8 prefix whose token table stays outside the graph, reading the whole table whatever the text', async () => {
    const int8 = exportPrefix(model, { cut: CUT, weights: 'int8', tokenEmbedding: 'input' });
    const int8Sha = await sha256Hex(int8);
    const table = serializeSafetensors(tokenTableTensors(tokenTable(model, 'int8')));
    const tableSha = await sha256Hex(table);
    await store.put(keys.devicePrefix(int8Sha, CUT), int8);
    await store.put(keys.tokenTable(tableSha), table);
    await device.approve({ sha256: int8Sha, model: 'tiny-gpt2', cut: CUT, tokenTable: tableSha, defence: LEVELS.off });
    const seenBefore = proxy.seen.length;
    const status = await runRound(await plan('run-table', { modelSha256: int8Sha, tokenTableSha256: tableSha }));
    expect(status.state).toBe('complete');
    // Storage sees one whole-table GET and no byte ranges: which rows the shard needs never leaves the device.
    const tableGets = proxy.seen.slice(seenBefore).filter((r) => r.method === 'GET' && r.path.endsWith(`${tableSha}.safetensors`));
    expect(tableGets).toHaveLength(1);
    expect(tableGets[0].range).toBeFalsy();
    // onnxruntime-web (the device's runtime, whose WASM kernels compute the same on any CPU) on the same graph, fed from
    // the whole table.
    const rows = ROWS.slice(0, 2);
    const enc = pairTokens(rows, 12, 50256);
    const session = await ortWeb.InferenceSession.create(int8);
    const out = await session.run({
      inputs_embeds: new ortWeb.Tensor('float32', lookupTokens(tokenTable(model, 'int8'), enc.ids), [enc.rows, enc.seqLen, config.nEmbd]),
      attention_mask: new ortWeb.Tensor('int64', BigInt64Array.from(enc.attentionMask, BigInt), [enc.rows, enc.seqLen]),
    });
    const got = decodeActivationBatch((await store.get(keys.activationBatch('run-table', 'dev-a', 0, 0)))!);
    const want = out[PREFIX_OUTPUT]!.data as Float32Array;
    expect(maxAbsDiff(got.hidden, want)).toBeLessThan(1e-5);

    // Bytes that are not the approved table fail the round before any activation is computed.
    const other = serializeSafetensors(tokenTableTensors(tokenTable(model, 'fp32')));
    await store.put(keys.tokenTable('0'.repeat(64)), other);
    const swapped = { ...(await plan('run-table-bad', { modelSha256: int8Sha, tokenTableSha256: tableSha })) };
    swapped.tokenTable = { sha256: tableSha, url: await viaProxy.presignGet(keys.tokenTable('0'.repeat(64)), 60) };
    const wrong = await runRound(swapped);
    expect(wrong.error).toBe(`token table hash mismatch: expected ${tableSha}, got ${await sha256Hex(other)}`);
    expect(await storedKeys('run-table-bad')).toEqual([]);
    await expect(client.startRound(await plan('run-table-none', { modelSha256: int8Sha }))).rejects.toThrow(
      `HTTP 403: token table (none) is not the one approved with segment ${int8Sha}`,
    );
  });

  it('triggered twice, a round yields the same objects and no duplicates', async () => {
    const before = await storedKeys('run-ok');
    const bytes = await store.get(keys.activationBatch('run-ok', 'dev-a', 0, 1));
    const again = await client.startRound(await plan('run-ok'));
    expect(again.state).toBe('complete');
    expect(await storedKeys('run-ok')).toEqual(before);
    expect(await store.get(keys.activationBatch('run-ok', 'dev-a', 0, 1))).toEqual(bytes);
    // The same run and round with other settings is refused.
    await expect(client.startRound(await plan('run-ok', { batchSize: 3 }))).rejects.toThrow(
      /HTTP 409: run run-ok round 0 was already started with different settings/,
    );
  });

  it('fails the round, with the reason in its status, when the model segment hash does not match', async () => {
    await device.approve({ sha256: 'f'.repeat(64), model: 'tiny-gpt2', cut: CUT });
    const status = await runRound({ ...(await plan('run-badhash')), model: { sha256: 'f'.repeat(64), url: (await plan('run-badhash')).model.url } });
    expect(status.state).toBe('failed');
    expect(status.error).toMatch(`model segment hash mismatch: expected ${'f'.repeat(64)}, got ${modelSha}`);
    expect(await storedKeys('run-badhash')).toEqual([]);
  });

  it('retries a failed upload with backoff and completes', async () => {
    proxy.fail('PUT', 'runs/run-retry/activations/dev-a/0/000001', 2);
    const status = await runRound(await plan('run-retry'));
    expect(status.state).toBe('complete');
    expect(status.failures).toEqual(['batch 1, attempt 1: HTTP 503', 'batch 1, attempt 2: HTTP 503']);
    expect(await storedKeys('run-retry')).toHaveLength(4);
  });

  it('after the last try, says so in the status and writes no manifest for the incomplete set', async () => {
    proxy.fail('PUT', 'runs/run-down/activations/dev-a/0/000001', Infinity);
    const status = await runRound(await plan('run-down'));
    expect(status).toMatchObject({ state: 'failed', batchesDone: 1, batchesTotal: 3 });
    expect(status.error).toBe('upload of batch 1: failed after 3 attempts: HTTP 503');
    expect(await storedKeys('run-down')).toEqual([keys.activationBatch('run-down', 'dev-a', 0, 0)]);
  });

  it('fails clearly when the request holds too few upload URLs or names a shard the device lacks', async () => {
    const few = await plan('run-few');
    few.uploads.batches.pop();
    expect((await runRound(few)).error).toBe('the shard makes 3 batches but the request holds 2 upload URLs');
    expect((await runRound(await plan('run-noshard', { shards: ['missing'] }))).error).toBe("no shard named 'missing' on this device");
    expect((await runRound(await plan('run-labels', { labels: ['0', '1'] }))).error).toMatch(
      /shard 'nli' has labels \["entailment","neutral","contradiction"\], the round expects \["0","1"\]/,
    );
  });

  it("keeps a long round's upload URLs one per stored value: a request with 4,000 of them (2.5 MB) runs", async () => {
    const long = await plan('run-long');
    const origin = new URL(proxy.url).origin;
    // URLs past the shard's 3 batches are never used; a round of thousands of batches would use them all.
    long.uploads.batches.push(...Array.from({ length: 4000 }, (_, i) => `${origin}/unused/${i}?${'x'.repeat(600)}`));
    const status = await runRound(long);
    expect(status).toMatchObject({ state: 'complete', batchesDone: 3 });
    expect(await storedKeys('run-long')).toHaveLength(4);
  });

  it('a replayed round request changes nothing', async () => {
    const body = JSON.stringify(await plan('run-replay'));
    const headers = { ...(await signRequest(await deviceSecret(SECRET, 'dev-a'), 'dev-a', 'POST', '/rounds', body)), 'content-type': 'application/json' };
    expect((await fetch(new URL('/rounds', device.url), { method: 'POST', headers, body })).status).toBe(202);
    await client.waitForRound('run-replay', 0);
    const keysBefore = await storedKeys('run-replay');
    const replay = await fetch(new URL('/rounds', device.url), { method: 'POST', headers, body });
    expect(replay.status).toBe(403);
    expect(await storedKeys('run-replay')).toEqual(keysBefore);
  });
});

describe("the owner's defence on a device", () => {
  /** Each stored batch of a run, decoded. */
  async function batchesOf(runId: string) {
    const manifest = JSON.parse(new TextDecoder().decode(await store.get(keys.activationManifest(runId, 'dev-a', 0)))) as ActivationManifest;
    return {
      manifest,
      batches: await Promise.all(
        manifest.batches.map(async (b) => decodeActivationBatch((await store.get(keys.activationBatch(runId, 'dev-a', 0, b.index)))!)),
      ),
    };
  }

  it('fails, before anything is uploaded, a round whose defence adds more noise than a server trains under', async () => {
    await device.approve({ sha256: modelSha, model: 'tiny-gpt2', cut: CUT, defence: { mechanism: 'metric', epsilon: 0.01 } });
    try {
      const status = await runRound(await plan('run-all-noise'));
      expect(status.state).toBe('failed');
      expect(status.error).toMatch(
        /this device's defence \(metric eps 0\.01\) allows noise of norm up to .* such uploads carry nothing but noise; its owner can set a larger epsilon/,
      );
      expect(await storedKeys('run-all-noise')).toEqual([]);
    } finally {
      await device.approve({ sha256: modelSha, model: 'tiny-gpt2', cut: CUT, defence: LEVELS.off });
    }
  });

  it('applies the setting of the approval, whatever the request says, and names it in the manifest and every batch', async () => {
    await device.approve({ sha256: modelSha, model: 'tiny-gpt2', cut: CUT, defence: LEVELS.high });
    try {
      // A server that asks for no defence, in a field the request does not have, gets the owner's all the same.
      const request = { ...(await plan('run-defended')), defence: LEVELS.off } as RoundRequest;
      expect((await runRound(request)).state).toBe('complete');
      const { manifest, batches } = await batchesOf('run-defended');
      expect(manifest.defence).toEqual(LEVELS.high);
      // The clip is what anyone running the segment on the calibration text gets: here onnxruntime-node.
      const calibration = await expectedHidden(CALIBRATION_TEXTS.map((t) => ({ text: t })) as never, CALIBRATION_SEQ_LEN, request.padTokenId, false);
      expect(manifest.clip).toBe(calibrationClip(calibration.hidden, calibration.mask, config.nEmbd));
      const sigma = gaussianScale(LEVELS.high, manifest.clip!);
      let [squares, count] = [0, 0];
      for (const [i, batch] of batches.entries()) {
        expect(batch.defence).toBe(canonicalDefence(LEVELS.high));
        const clean = await expectedHidden(ROWS.slice(i * 2, i * 2 + 2), request.seqLen, request.padTokenId);
        for (let p = 0; p < batch.mask.length; p++) {
          const at = (h: Float32Array) => h.subarray(p * config.nEmbd, (p + 1) * config.nEmbd);
          if (!batch.mask[p]) {
            expect(at(batch.hidden).every((v) => v === 0)).toBe(true);
            continue;
          }
          const norm = Math.hypot(...at(clean.hidden));
          const scale = norm > manifest.clip! ? manifest.clip! / norm : 1;
          at(batch.hidden).forEach((v, k) => ((squares += (v - at(clean.hidden)[k] * scale) ** 2), count++));
        }
      }
      // The noise is as large as the owner's epsilon says (within sampling error over a few hundred values).
      expect(Math.sqrt(squares / count) / sigma).toBeGreaterThan(0.85);
      expect(Math.sqrt(squares / count) / sigma).toBeLessThan(1.15);
    } finally {
      await device.approve({ sha256: modelSha, model: 'tiny-gpt2', cut: CUT, defence: LEVELS.off });
    }
  });

  it.each(['deleted', 'replaced'] as const)('stops a running round when its owner has %s the shard, and uploads nothing of it after', async (how) => {
    const runId = `run-${how}`;
    const diary = (entry: string) => Array.from({ length: 200 }, (_, i) => ({ text: `${entry} ${i}`, text_pair: 'about my health', label: LABELS[i % 3] }));
    const put = (rows: object[]) =>
      fetch(new URL(`/shards/${runId}?format=jsonl`, device.url), {
        method: 'PUT',
        headers: { authorization: 'Bearer owner' },
        body: rows.map((r) => JSON.stringify(r)).join('\n'),
      });
    expect((await put(diary('private diary entry'))).status).toBe(201);
    // Gone after the test, so that the rounds of other tests, which take every shard of their task, never meet it.
    onTestFinished(async () => void (await fetch(new URL(`/shards/${runId}`, device.url), { method: 'DELETE', headers: { authorization: 'Bearer owner' } })));
    await client.startRound(await plan(runId, { shards: [runId], rows: 200, batchSize: 1 }));
    while ((await client.roundStatus(runId, 0)).batchesDone < 2);
    const changed =
      how === 'deleted'
        ? await fetch(new URL(`/shards/${runId}`, device.url), { method: 'DELETE', headers: { authorization: 'Bearer owner' } })
        : await put(diary('another diary entry'));
    expect(changed.status).toBe(how === 'deleted' ? 204 : 201);
    const atChange = (await client.roundStatus(runId, 0)).batchesDone;
    const status = await client.waitForRound(runId, 0);
    expect([status.state, status.error]).toEqual(['failed', `shard '${runId}' was ${how} by its owner during the round: no more of it is uploaded`]);
    // The piece running when the shard changed may finish its one batch; none after it.
    const stored = (await storedKeys(runId)).filter((k) => k.endsWith('.safetensors'));
    expect(stored.length).toBeLessThanOrEqual(atChange + 1);
  });

  it("fails a forged token table as a hash mismatch alone, after reading all of it, whatever its header says of the shard's tokens", async () => {
    const seg = await approvedInt8Segment();
    // Vocabularies that stop below every token of the shard and past GPT-2's, and rows far wider than the segment's
    // (which would size the rows kept by the shard's count of distinct tokens): had any failed otherwise than the
    // others, a server could search for the shard's largest token id (table-stream.test.ts: read alike, to the end).
    const forgeries: Array<[string, number, number]> = [
      ['vocabulary of 100', 100, config.nEmbd],
      ['vocabulary of 60,000', 60_000, config.nEmbd],
      ['rows of width 2^16', 100, 1 << 16],
    ];
    const outcomes: unknown[][] = [];
    for (const [what, vocab, width] of forgeries) {
      const forged = serializeSafetensors({
        'wte.weight_int8': { dtype: 'I8', shape: [vocab, width], data: new Int8Array(vocab * width) },
        'wte.weight_scale': { dtype: 'F32', shape: [vocab], data: new Float32Array(vocab).fill(1) },
      });
      const key = `runs/forged/table-${outcomes.length}.safetensors`;
      await store.put(key, forged);
      const request = await plan(`run-forged-${outcomes.length}`, {
        modelSha256: seg.sha256,
        tokenTableSha256: seg.tokenTable!.sha256,
        weightsSha256: seg.weights!.sha256,
        shards: ['nli'],
      });
      request.tokenTable!.url = await viaProxy.presignGet(key, 600);
      const seenBefore = proxy.seen.length;
      const status = await runRound(request);
      const gets = proxy.seen.slice(seenBefore).filter((r) => r.method === 'GET' && r.path.endsWith(key));
      outcomes.push([what, status.state, status.error?.replace(/got [0-9a-f]{64}/, 'got …'), gets.map((g) => g.complete)]);
    }
    const mismatch = `token table hash mismatch: expected ${seg.tokenTable!.sha256}, got …`;
    expect(outcomes).toEqual(forgeries.map(([what]) => [what, 'failed', mismatch, [true]]));
  });

  it("refuses a token table served with a content-encoding before reading it: its content-length is not the table's", async () => {
    const seg = await approvedInt8Segment();
    proxy.relabel(`${seg.tokenTable!.sha256}.safetensors`, { 'content-encoding': 'gzip' });
    const request = await plan('run-encoded', {
      modelSha256: seg.sha256,
      tokenTableSha256: seg.tokenTable!.sha256,
      weightsSha256: seg.weights!.sha256,
      shards: ['nli'],
    });
    const status = await runRound(request);
    expect([status.state, status.error]).toEqual(['failed', 'token table GET: served with content-encoding gzip; the table is stored as it is']);
  });

  it('refuses to run a segment approved before 2026-12-07 that quantizes the whole batch with one scale, saying what to do', async () => {
    const old = wholeBatchQuantizedSegment(config.nEmbd);
    const sha = await sha256Hex(old);
    await store.put(keys.devicePrefix(sha, CUT), old);
    await device.approve({ sha256: sha, model: 'tiny-gpt2', cut: CUT, defence: LEVELS.medium });
    const status = await runRound(await plan('run-whole-batch', { modelSha256: sha, shards: ['nli'] }));
    expect([status.state, status.batchesDone, status.error]).toEqual([
      'failed',
      0,
      expect.stringMatching(/^model segment: it quantizes activations with one scale over the whole batch \(DynamicQuantizeMatMul\)/),
    ]);
  });

  // int8: each position's activations take a scale of their own, so no other row, padding or length moves it.
  it.each(['fp32', 'int8'] as const)(
    'uploads a row bit-equal again in another run with another batch size, length and padding token (%s weights): copies average to nothing new',
    async (weights) => {
      const segment = exportPrefix(model, { cut: CUT, weights });
      const sha = await sha256Hex(segment);
      await store.put(keys.devicePrefix(sha, CUT), segment);
      await device.approve({ sha256: sha, model: 'tiny-gpt2', cut: CUT, defence: LEVELS.medium });
      try {
        const request = (runId: string, o: Partial<DeviceRoundPlan>) => plan(runId, { modelSha256: sha, ...o });
        expect((await runRound(await request(`run-copy-a-${weights}`, {}))).state).toBe('complete');
        expect((await runRound(await request(`run-copy-b-${weights}`, { batchSize: 5, seqLen: 16, padTokenId: 0 }))).state).toBe('complete');
        const a = (await batchesOf(`run-copy-a-${weights}`)).batches;
        const [b] = (await batchesOf(`run-copy-b-${weights}`)).batches;
        const d = config.nEmbd;
        let compared = 0;
        for (let r = 0; r < ROWS.length; r++) {
          const inA = a[Math.floor(r / 2)];
          const rowA = r % 2;
          for (let p = 0; p < inA.seqLen && inA.mask[rowA * inA.seqLen + p]; p++, compared++) {
            expect(b.hidden.subarray((r * b.seqLen + p) * d, (r * b.seqLen + p + 1) * d)).toEqual(
              inA.hidden.subarray((rowA * inA.seqLen + p) * d, (rowA * inA.seqLen + p + 1) * d),
            );
          }
        }
        expect(compared).toBeGreaterThan(40);
      } finally {
        await device.approve({ sha256: sha, model: 'tiny-gpt2', cut: CUT, defence: LEVELS.off });
      }
    },
  );
});
