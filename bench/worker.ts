/**
 * npm run bench:worker — the device prefix inside workerd (onnxruntime-web, 1 thread, through a real round) against
 * onnxruntime-node in this process on the same prefix and the same batches (ratio = workerd / node), and the bytes a
 * device uploads per sample for fp32 and fp16 activations; under `llama`, Llama-3.2-1B's segment at cut 1 (int8,
 * weights as external data, token table streamed, Llama 3's tokenizer) through a real round in workerd at the batch
 * that fits a Worker (1 x 128, bench:device). JSON on stdout, progress on stderr.
 */
import { printReport } from './report.ts';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { sha256Hex } from '../core/auth/signing.ts';
import { gpt2Config } from '../core/model/gpt2/config.ts';
import { initModel } from '../core/model/gpt2/init.ts';
import { lookupTokens, tokenTableFromTensors } from '../core/onnx/embedding.ts';
import { exportPrefix, PREFIX_DATA_LOCATION, PREFIX_OUTPUT } from '../core/onnx/prefix.ts';
import { deviceSegment } from '../core/onnx/segment.ts';
import { llamaConfig } from '../core/model/llama/config.ts';
import { initLlama } from '../core/model/llama/init.ts';
import { parseSafetensors } from '../core/tensors/safetensors.ts';
import { writeTokenizer } from '../gpu-server/model-folder/folder.ts';
import { keys } from '../core/storage/keys.ts';
import { S3Store } from '../core/storage/s3.ts';
import { GPT2Tokenizer } from '../core/tokenizer/gpt2.ts';
import { DeviceClient } from '../core/wire/device-client.ts';
import type { ActivationManifest } from '../core/wire/round.ts';
import { buildRoundRequest } from '../gpu-server/rounds/request.ts';
import { startStack } from '../infra/local/stack.ts';
import { localTempDir } from '../infra/local/paths.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
process.env.WRANGLER_LOG ??= 'warn';
const log = (msg: string) => process.stderr.write(`[bench:worker] ${msg}\n`);
const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

// GPT-2 small's width with a 4,096-token vocabulary: the block compute of the real thing, while the embedding table
// (50,257 rows would put ~150 MB inside the session) stays small enough for a device in this benchmark.
const CUT = 2;
const BATCH = 8;
const SEQ = 128;
const ROWS = 32;
const config = gpt2Config({ nLayer: CUT, vocabSize: 4096, nPositions: SEQ });
log('exporting the int8 prefix (n_embd 768, 12 heads, cut 2)');
const onnx = exportPrefix(initModel(config, { seed: 0 }), { cut: CUT, weights: 'int8' });
const sha = await sha256Hex(onnx);

// Rows of ~SEQ tokens from SST-2 sentences, token ids kept inside the small vocabulary by the text we choose.
const tokenizer = new GPT2Tokenizer();
const words = 'the a of and to in is it that film movie good bad story one not but with as for this'.split(' ');
const rows = Array.from({ length: ROWS }, (_, i) => ({
  text: Array.from({ length: SEQ + 8 }, (_, j) => words[(i * 7 + j * 3) % words.length]).join(' '),
  label: i % 2,
}));
if (Math.max(...tokenizer.encode(rows[0].text)) >= config.vocabSize) throw new Error('bench text uses tokens outside the bench vocabulary');

const dir = await localTempDir('bench-worker');
log('starting S3 and a device worker under workerd');
// MIN_CUT 1: this owner accepts Llama-3.2-1B's cut 1 (the default minimum is 2, which no Worker fits at that size).
const stack = await startStack({ dir, devices: 1, deviceVars: { PIECE_BATCHES: '2', MIN_CUT: '1' } });
try {
  const store = new S3Store(stack.s3.config);
  await store.put(keys.devicePrefix(sha, CUT), onnx);
  const device = stack.devices[0];
  await device.uploadShard('bench', rows);
  await device.approve({ sha256: sha, model: 'bench', cut: CUT });
  const client = new DeviceClient(device.url, device.id, stack.roundSecret);

  const runs: Record<string, { status: Awaited<ReturnType<DeviceClient['waitForRound']>>; manifest: ActivationManifest; wallMs: number }> = {};
  // The first round compiles the WASM and creates the session: a warm-up, not measured.
  for (const dtype of ['fp16', 'fp32', 'fp16'] as const) {
    const runId = `bench-${dtype}-${Object.keys(runs).length}`;
    log(`round with ${dtype} activations: ${ROWS} rows, batch ${BATCH} x ${SEQ}`);
    const request = await buildRoundRequest(store, {
      runId,
      round: 0,
      deviceId: device.id,
      modelSha256: sha,
      cut: CUT,
      rows: ROWS,
      batchSize: BATCH,
      seqLen: SEQ,
      dtype,
      labels: ['0', '1'],
      padTokenId: 0,
    });
    const started = performance.now();
    await client.startRound(request);
    const status = await client.waitForRound(runId, 0, { intervalMs: 100 });
    if (status.state !== 'complete') throw new Error(`round failed: ${status.error}`);
    const manifest = JSON.parse(new TextDecoder().decode(await store.get(keys.activationManifest(runId, device.id, 0)))) as ActivationManifest;
    runs[runs.warmup ? dtype : 'warmup'] = { status, manifest, wallMs: performance.now() - started };
  }

  log('the same batches on onnxruntime-node, 1 thread');
  const session = await ort.InferenceSession.create(onnx, { intraOpNumThreads: 1 });
  let nodeMs = 0;
  let nodeTokens = 0;
  for (let b = -1; b < ROWS / BATCH; b++) {
    // Batch -1 repeats batch 0 as a warm-up.
    const from = Math.max(b, 0) * BATCH;
    const enc = tokenizer.encodeBatch(
      rows.slice(from, from + BATCH).map((r) => r.text),
      { maxLength: SEQ, padTokenId: 0 },
    );
    const shape = [enc.rows, enc.seqLen];
    const feeds = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(enc.ids, BigInt), shape),
      attention_mask: new ort.Tensor('int64', BigInt64Array.from(enc.attentionMask, BigInt), shape),
    };
    const t0 = performance.now();
    (await session.run(feeds))[PREFIX_OUTPUT].dispose();
    if (b < 0) continue;
    nodeMs += performance.now() - t0;
    nodeTokens += enc.attentionMask.reduce((a, m) => a + m, 0);
  }
  const llama = await llamaRound(store, device, client);
  const worker = runs.fp32.status;
  const workerTps = worker.tokens / (worker.forwardMs / 1000);
  const nodeTps = nodeTokens / (nodeMs / 1000);
  const perSample = (dtype: 'fp32' | 'fp16') => Math.round(runs[dtype].manifest.batches.reduce((a, b) => a + b.bytes, 0) / ROWS);
  printReport('device worker', {
    prefix: { nEmbd: config.nEmbd, nHead: config.nHead, vocabSize: config.vocabSize, cut: CUT, weights: 'int8', onnxMB: round(onnx.byteLength / 2 ** 20) },
    batch: { rows: ROWS, batchSize: BATCH, seqLen: SEQ, tokens: worker.tokens },
    forwardTokensPerSecond: { workerd: Math.round(workerTps), onnxruntimeNode1Thread: Math.round(nodeTps), ratioWorkerdToNode: round(workerTps / nodeTps, 3) },
    roundTokensPerSecondIncludingTokenizeAndUpload: {
      fp32: Math.round(worker.tokens / (runs.fp32.wallMs / 1000)),
      fp16: Math.round(worker.tokens / (runs.fp16.wallMs / 1000)),
    },
    uploadBytesPerSample: { fp32: perSample('fp32'), fp16: perSample('fp16'), ratioFp16ToFp32: round(perSample('fp16') / perSample('fp32'), 3) },
    llama,
  });
} finally {
  await stack.stop();
  await rm(dir, { recursive: true, force: true });
}

/**
 * Llama-3.2-1B's device segment at cut 1 (random weights of the published shapes: only the token table and block 0
 * are made) through a real round in workerd, 1 x 128 tokens a batch, against onnxruntime-node on 1 thread on the same
 * graph and weights. workerd gives no per-isolate memory figure here, so the fit is bench:device's (the same
 * onnxruntime-web build): this shows the segment runs inside workerd, as a device runs it.
 */
async function llamaRound(store: S3Store, device: (typeof stack.devices)[number], client: DeviceClient) {
  const LLAMA_ROWS = 4;
  log("llama: making Llama-3.2-1B's token table and block 0, exporting cut 1 (int8, external data)");
  const model = initLlama(llamaConfig({ nLayer: 2 }), { seed: 0 });
  const seg = await deviceSegment(model, 1, 'int8');
  await writeTokenizer(dir, model.config);
  const tokenizerBytes = await readFile(join(dir, 'tokenizer.json'));
  const tokenizer = { sha256: await sha256Hex(tokenizerBytes), bos: model.config.bosTokenId, eos: model.config.eosTokenIds[0]! };
  await store.put(keys.devicePrefix(seg.sha256, 1), seg.onnx);
  await store.put(keys.segmentWeights(seg.weights!.sha256), seg.weights!.bytes);
  await store.put(keys.tokenTable(seg.tokenTable!.sha256), seg.tokenTable!.bytes);
  await store.put(keys.tokenizer(tokenizer.sha256), tokenizerBytes);
  await device.uploadShard('llama-bench', rows.slice(0, LLAMA_ROWS));
  await device.approve({
    sha256: seg.sha256,
    model: 'llama-3.2-1b',
    cut: 1,
    tokenTable: seg.tokenTable!.sha256,
    weights: seg.weights!.sha256,
    tokenizer: tokenizer.sha256,
  });
  const request = (runId: string) =>
    buildRoundRequest(store, {
      runId,
      round: 0,
      deviceId: device.id,
      modelSha256: seg.sha256,
      tokenTableSha256: seg.tokenTable!.sha256,
      weightsSha256: seg.weights!.sha256,
      tokenizer,
      cut: 1,
      rows: LLAMA_ROWS,
      batchSize: 1,
      seqLen: SEQ,
      dtype: 'fp16',
      labels: ['0', '1'],
      padTokenId: model.config.padTokenId,
      shards: ['llama-bench'],
    });
  let status: Awaited<ReturnType<DeviceClient['waitForRound']>> | undefined;
  // The first round loads the segment: a warm-up, not measured.
  for (const runId of ['llama-warmup', 'llama']) {
    log(`llama: round ${runId}, ${LLAMA_ROWS} rows of 1 x ${SEQ} in workerd`);
    await client.startRound(await request(runId));
    status = await client.waitForRound(runId, 0, { intervalMs: 200 });
    if (status.state !== 'complete') throw new Error(`llama round failed: ${status.error}`);
  }
  log('llama: the same graph and weights on onnxruntime-node, 1 thread');
  const session = await ort.InferenceSession.create(seg.onnx, {
    intraOpNumThreads: 1,
    externalData: [{ path: PREFIX_DATA_LOCATION, data: seg.weights!.bytes }],
  });
  const table = tokenTableFromTensors(parseSafetensors(seg.tokenTable!.bytes).tensors);
  const ids = Array.from({ length: SEQ }, (_, i) => (i * 7919) % model.config.vocabSize);
  const feeds = {
    inputs_embeds: new ort.Tensor('float32', lookupTokens(table, ids), [1, SEQ, model.config.nEmbd]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(SEQ).fill(1n), [1, SEQ]),
  };
  await session.run(feeds);
  const t0 = performance.now();
  for (let i = 0; i < LLAMA_ROWS; i++) await session.run(feeds);
  const nodeTps = (LLAMA_ROWS * SEQ) / ((performance.now() - t0) / 1000);
  await session.release();
  const workerTps = status!.tokens / (status!.forwardMs / 1000);
  return {
    shape: {
      model: 'Llama-3.2-1B (random weights, published shapes)',
      cut: 1,
      weights: 'int8, external data',
      graphKB: round(seg.onnx.byteLength / 1024),
      weightsMB: round(seg.weights!.bytes.byteLength / 2 ** 20),
      tokenTableMB: round(seg.tokenTable!.bytes.byteLength / 2 ** 20),
      batch: 1,
      seq: SEQ,
      rows: LLAMA_ROWS,
    },
    forwardTokensPerSecond: { workerd: Math.round(workerTps), onnxruntimeNode1Thread: Math.round(nodeTps), ratioWorkerdToNode: round(workerTps / nodeTps, 3) },
    memory: 'not measurable inside workerd here (no per-isolate figure); bench:device measures the same onnxruntime-web build: 109 MB at 1 x 128, fits 128 MB',
  };
}
