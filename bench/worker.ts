/**
 * npm run bench:worker — the device prefix inside workerd (onnxruntime-web, 1 thread, through a real round) against
 * onnxruntime-node in this process on the same prefix and the same batches (ratio = workerd / node), and the bytes a
 * device uploads per sample for fp32 and fp16 activations. JSON on stdout, progress on stderr.
 */
import { printReport } from './report.ts';
import { rm } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';
import { sha256Hex } from '../core/auth/signing.ts';
import { gpt2Config } from '../core/model/config.ts';
import { initModel } from '../core/model/init.ts';
import { exportPrefix, PREFIX_OUTPUT } from '../core/onnx/prefix.ts';
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
const rows = Array.from({ length: ROWS }, (_, i) => ({ text: Array.from({ length: SEQ + 8 }, (_, j) => words[(i * 7 + j * 3) % words.length]).join(' '), label: i % 2 }));
if (Math.max(...tokenizer.encode(rows[0].text)) >= config.vocabSize) throw new Error('bench text uses tokens outside the bench vocabulary');

const dir = await localTempDir('bench-worker');
log('starting S3 and a device worker under workerd');
const stack = await startStack({ dir, devices: 1, deviceVars: { PIECE_BATCHES: '2' } });
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
    const request = await buildRoundRequest(store, { runId, round: 0, deviceId: device.id, modelSha256: sha, cut: CUT, rows: ROWS, batchSize: BATCH, seqLen: SEQ, dtype, labels: ['0', '1'], padTokenId: 0 });
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
    const enc = tokenizer.encodeBatch(rows.slice(from, from + BATCH).map((r) => r.text), { maxLength: SEQ, padTokenId: 0 });
    const shape = [enc.batch, enc.seq];
    const feeds = { input_ids: new ort.Tensor('int64', BigInt64Array.from(enc.ids, BigInt), shape), attention_mask: new ort.Tensor('int64', BigInt64Array.from(enc.attentionMask, BigInt), shape) };
    const t0 = performance.now();
    (await session.run(feeds))[PREFIX_OUTPUT].dispose();
    if (b < 0) continue;
    nodeMs += performance.now() - t0;
    nodeTokens += enc.attentionMask.reduce((a, m) => a + m, 0);
  }
  const worker = runs.fp32.status;
  const workerTps = worker.tokens / (worker.forwardMs / 1000);
  const nodeTps = nodeTokens / (nodeMs / 1000);
  const perSample = (dtype: 'fp32' | 'fp16') => Math.round(runs[dtype].manifest.batches.reduce((a, b) => a + b.bytes, 0) / ROWS);
  printReport('device worker', {
    prefix: { nEmbd: config.nEmbd, nHead: config.nHead, vocabSize: config.vocabSize, cut: CUT, weights: 'int8', onnxMB: round(onnx.byteLength / 2 ** 20) },
    batch: { rows: ROWS, batchSize: BATCH, seqLen: SEQ, tokens: worker.tokens },
    forwardTokensPerSecond: { workerd: Math.round(workerTps), onnxruntimeNode1Thread: Math.round(nodeTps), ratioWorkerdToNode: round(workerTps / nodeTps, 3) },
    roundTokensPerSecondIncludingTokenizeAndUpload: { fp32: Math.round(worker.tokens / (runs.fp32.wallMs / 1000)), fp16: Math.round(worker.tokens / (runs.fp16.wallMs / 1000)) },
    uploadBytesPerSample: { fp32: perSample('fp32'), fp16: perSample('fp16'), ratioFp16ToFp32: round(perSample('fp16') / perSample('fp32'), 3) },
  });
} finally {
  await stack.stop();
  await rm(dir, { recursive: true, force: true });
}
