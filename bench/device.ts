/**
 * npm run bench:device — throughput and memory of the device prefix (embeddings + blocks [0, 2) of GPT-2 small's
 * shape, random weights) at batch 8 x 128 on onnxruntime-web (WASM, 1 thread, the runtime of the device worker) and
 * onnxruntime-node (the reference in the same process: ratio = web / node). Prints JSON on stdout, progress on stderr.
 */
import { printReport } from './report.ts';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as ortNode from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { gpt2Config } from '../core/model/config.ts';
import { initModel } from '../core/model/init.ts';
import { flopsPerToken } from '../core/flops/flops.ts';
import { lookupTokens, tokenTable, tokenTableTensors } from '../core/onnx/embedding.ts';
import { exportPrefix, PREFIX_OUTPUT, type PrefixOptions } from '../core/onnx/prefix.ts';
import { serializeSafetensors } from '../core/tensors/safetensors.ts';

const B = 8;
const T = 128;
const CUT = 2;
const RUNS = 5;
const WORKER_LIMIT_MB = 128;

const log = (msg: string) => process.stderr.write(`[bench:device] ${msg}\n`);
const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// Blocks [0, 2) of GPT-2 small are exactly a 2-layer model of the same width.
const config = gpt2Config({ nLayer: CUT });
log('initialising random weights of GPT-2 small shape (embeddings + 2 blocks)');
const model = initModel(config, { seed: 0 });
const dir = await mkdtemp(join(tmpdir(), 'splitfrozen-bench-'));
ortWeb.env.wasm.numThreads = 1;

const ids = BigInt64Array.from({ length: B * T }, (_, i) => BigInt((i * 7919) % config.vocabSize));
const mask = new BigInt64Array(B * T).fill(1n);

type Ort = typeof ortNode | typeof ortWeb;
async function tokensPerSecond(ort: Ort, onnx: Uint8Array, feedsOf: (ort: Ort) => Record<string, unknown>, options: object = {}) {
  const session = await ort.InferenceSession.create(onnx, options);
  const times: number[] = [];
  for (let i = 0; i <= RUNS; i++) {
    const feeds = feedsOf(ort); // the embedding lookup outside the graph is part of the device's work
    const start = performance.now();
    const out = await session.run(feeds as never);
    if (i > 0) times.push(performance.now() - start); // run 0 warms up
    if (out[PREFIX_OUTPUT].dims.join() !== [B, T, config.nEmbd].join()) throw new Error('unexpected output shape');
  }
  await session.release();
  return (B * T) / (median(times) / 1000);
}

const variants: Array<{ name: string; options: PrefixOptions }> = [
  { name: 'fp32', options: { cut: CUT, weights: 'fp32' } },
  { name: 'int8', options: { cut: CUT, weights: 'int8' } },
  { name: 'int8, token table outside the graph', options: { cut: CUT, weights: 'int8', tokenEmbedding: 'input' } },
];

const flops = flopsPerToken({ config, seqLen: T, cut: CUT });
const results = [];
for (const { name, options } of variants) {
  log(`exporting ${name}`);
  const onnx = exportPrefix(model, options);
  const table = options.tokenEmbedding === 'input' ? tokenTable(model, options.weights ?? 'fp32') : undefined;
  const feedsOf = (ort: Ort) => {
    const m = new ort.Tensor('int64', mask, [B, T]);
    return table
      ? { inputs_embeds: new ort.Tensor('float32', lookupTokens(table, ids), [B, T, config.nEmbd]), attention_mask: m }
      : { input_ids: new ort.Tensor('int64', ids, [B, T]), attention_mask: m };
  };
  log(`${name}: onnxruntime-web, 1 thread`);
  const web = await tokensPerSecond(ortWeb, onnx, feedsOf);
  log(`${name}: onnxruntime-node, 1 thread`);
  const node1 = await tokensPerSecond(ortNode, onnx, feedsOf, { intraOpNumThreads: 1 });
  log(`${name}: onnxruntime-node, ${cpus().length} threads`);
  const nodeAll = await tokensPerSecond(ortNode, onnx, feedsOf, { intraOpNumThreads: cpus().length });
  const file = join(dir, `${results.length}.onnx`);
  await writeFile(file, onnx);
  let tableBytes: number | undefined;
  if (table) {
    const bytes = serializeSafetensors(tokenTableTensors(table));
    tableBytes = bytes.byteLength;
    await writeFile(`${file}.table.safetensors`, bytes);
  }
  results.push({
    variant: name,
    onnxFileMB: round(onnx.byteLength / 2 ** 20),
    tokenTableFileMB: tableBytes === undefined ? undefined : round(tableBytes / 2 ** 20),
    tokensPerSecond: { onnxruntimeWeb1Thread: Math.round(web), onnxruntimeNode1Thread: Math.round(node1), [`onnxruntimeNode${cpus().length}Threads`]: Math.round(nodeAll) },
    ratioWebToNode1Thread: round(web / node1, 3),
    webGflops: round((web * flops.device.forward) / 1e9),
    file,
  });
}

// Memory in a fresh process per case, so that one case's high-water mark does not leak into the next.
const exec = promisify(execFile);
async function memory(args: string[]) {
  const { stdout } = await exec(process.execPath, ['--expose-gc', '--import', 'tsx', new URL('prefix-memory.ts', import.meta.url).pathname, '--batch', String(B), '--seq', String(T), ...args]);
  return JSON.parse(stdout);
}
const int8Graph = results[1].file;
const int8Outside = results[2].file;
const cases = [
  { case: 'int8, token table in the graph', args: ['--onnx', int8Graph] },
  { case: 'int8, whole token table held in JS', args: ['--onnx', int8Outside, '--table', `${int8Outside}.table.safetensors`] },
  { case: "int8, token table streamed once, only the batch's rows kept", args: ['--onnx', int8Outside, '--table', `${int8Outside}.table.safetensors`, '--rows-only'] },
];
const memoryResults = [];
for (const c of cases) {
  log(`memory: ${c.case}`);
  const m = await memory(c.args);
  memoryResults.push({ case: c.case, ...m, fitsWorker128MB: m.afterRun.totalMB < WORKER_LIMIT_MB });
}
await rm(dir, { recursive: true, force: true });

printReport('device prefix', {
  shape: { model: 'GPT-2 small (random weights)', nEmbd: config.nEmbd, nHead: config.nHead, cut: CUT, batch: B, seq: T },
  deviceForwardGflopPerToken: round(flops.device.forward / 1e9, 4),
  throughput: results.map(({ file: _file, ...r }) => r),
  memory: memoryResults,
  memoryNote: 'totalMB = WebAssembly memory + JS heap + ArrayBuffers of the isolate after one batch: what a Worker is charged against its 128 MB',
});
