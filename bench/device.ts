/**
 * npm run bench:device — throughput and memory of the device prefix (embeddings + blocks [0, 2) of GPT-2 small's
 * shape, random weights) at batch 8 x 128 on onnxruntime-web (WASM, 1 thread, the runtime of the device worker) and
 * onnxruntime-node (the reference in the same process: ratio = web / node); and, under `llama`, Llama-3.2-1B at cut 1
 * in int8: the memory a Worker would be charged at several batch shapes, and tokens/s at the largest that fits.
 * Prints JSON on stdout, progress on stderr.
 */
import { printReport } from './report.ts';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as ortNode from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { gpt2Config } from '../core/model/gpt2/config.ts';
import { initModel } from '../core/model/gpt2/init.ts';
import { flopsPerToken } from '../core/flops/flops.ts';
import { lookupTokens, tokenTable, tokenTableFromTensors, tokenTableTensors } from '../core/onnx/embedding.ts';
import { exportPrefix, exportPrefixExternal, PREFIX_OUTPUT, type PrefixOptions } from '../core/onnx/prefix.ts';
import { llamaConfig } from '../core/model/llama/config.ts';
import { initLlama } from '../core/model/llama/init.ts';
import { parseSafetensors } from '../core/tensors/safetensors.ts';
import { serializeSafetensors } from '../core/tensors/safetensors.ts';
import { calibrationClip, defendHidden } from '../core/privacy/defend.ts';
import { DEFAULT_LEVEL, describeDefence, LEVELS, type Defence } from '../core/privacy/defence.ts';
import { groupMechanism, groupsContext, groupsSha256 } from '../core/privacy/groups.ts';
import { sanitiser } from '../core/privacy/sanitise.ts';
import { defenceKey } from '../core/privacy/stream.ts';

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
/** `shape`: the output's [batch, seq, d]. */
async function tokensPerSecond(ort: Ort, onnx: Uint8Array, feedsOf: (ort: Ort) => Record<string, unknown>, options: object = {}, shape = [B, T, config.nEmbd]) {
  const session = await ort.InferenceSession.create(onnx, options);
  const times: number[] = [];
  for (let i = 0; i <= RUNS; i++) {
    const feeds = feedsOf(ort); // the embedding lookup outside the graph is part of the device's work
    const start = performance.now();
    const out = await session.run(feeds as never);
    if (i > 0) times.push(performance.now() - start); // run 0 warms up
    if (out[PREFIX_OUTPUT].dims.join() !== shape.join()) throw new Error('unexpected output shape');
  }
  await session.release();
  return (shape[0]! * shape[1]!) / (median(times) / 1000);
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
    tokensPerSecond: {
      onnxruntimeWeb1Thread: Math.round(web),
      onnxruntimeNode1Thread: Math.round(node1),
      [`onnxruntimeNode${cpus().length}Threads`]: Math.round(nodeAll),
    },
    ratioWebToNode1Thread: round(web / node1, 3),
    webGflops: round((web * flops.device.forward) / 1e9),
    file,
  });
}

// Memory in a fresh process per case, so that one case's high-water mark does not leak into the next.
const exec = promisify(execFile);
async function memory(args: string[]) {
  const shape = args.includes('--batch') ? [] : ['--batch', String(B), '--seq', String(T)];
  const { stdout } = await exec(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', new URL('prefix-memory.ts', import.meta.url).pathname, ...shape, ...args],
    { maxBuffer: 2 ** 20 },
  );
  return JSON.parse(stdout);
}
const int8Graph = results[1].file;
const int8Outside = results[2].file;
const cases = [
  { case: 'int8, token table in the graph', args: ['--onnx', int8Graph] },
  { case: 'int8, whole token table held in JS', args: ['--onnx', int8Outside, '--table', `${int8Outside}.table.safetensors`] },
  {
    case: "int8, token table streamed once, only the batch's rows kept",
    args: ['--onnx', int8Outside, '--table', `${int8Outside}.table.safetensors`, '--rows-only'],
  },
];
const memoryResults = [];
for (const c of cases) {
  log(`memory: ${c.case}`);
  const m = await memory(c.args);
  memoryResults.push({ case: c.case, ...m, fitsWorker128MB: m.afterRun.totalMB < WORKER_LIMIT_MB });
}
// The device's modules' own heap, under the bundle's aliases (as above) against the same modules without them.
log("memory: the JS heap of the device's modules without the Worker bundle's aliases");
const withoutAliases = (await memory([...cases[2]!.args, '--without-worker-aliases'])).afterImports.jsHeapMB;
const withAliases = memoryResults[2]!.afterImports.jsHeapMB;
const modulesHeap = { workerBundleMB: withAliases, withoutAliasesMB: withoutAliases, ratio: round(withAliases / withoutAliases, 3) };
log('llama: Llama-3.2-1B at cut 1, int8, token table outside the graph');
const llama = await llamaCut1();
await rm(dir, { recursive: true, force: true });

log(`defence: the fp32 prefix on onnxruntime-web with and without the default defence (${DEFAULT_LEVEL}), and after the groups defence`);
const defence = await defenceCost(exportPrefix(model, variants[0].options));

printReport('device prefix', {
  shape: { model: 'GPT-2 small (random weights)', nEmbd: config.nEmbd, nHead: config.nHead, cut: CUT, batch: B, seq: T },
  deviceForwardGflopPerToken: round(flops.device.forward / 1e9, 4),
  throughput: results.map(({ file: _file, ...r }) => r),
  memory: memoryResults,
  memoryNote:
    "totalMB = WebAssembly memory + JS heap + ArrayBuffers of the isolate after one batch: what a Worker is charged against its 128 MB; the device's modules are imported under the bundle's aliases (wrangler.toml)",
  modulesHeap,
  defence,
  llama,
});

/**
 * What the owner's default defence costs the device: the prefix alone against the prefix, then clipping, derived
 * noise and zeroed padding on its output (core/privacy/defend.ts), on the same session, alternating, same shape.
 */
async function defenceCost(onnx: Uint8Array) {
  const session = await ortWeb.InferenceSession.create(onnx);
  const ids32 = Int32Array.from(ids, Number);
  const mask32 = new Int32Array(B * T).fill(1);
  const feeds = () => ({ input_ids: new ortWeb.Tensor('int64', ids, [B, T]), attention_mask: new ortWeb.Tensor('int64', mask, [B, T]) });
  const hiddenOf = async () => Float32Array.from((await session.run(feeds()))[PREFIX_OUTPUT].data as Float32Array);
  const run = {
    defence: LEVELS[DEFAULT_LEVEL],
    clip: calibrationClip(await hiddenOf(), mask32, config.nEmbd),
    key: defenceKey('a device secret for the benchmark only'),
    segment: '0'.repeat(64),
  };
  // The groups defence: GPT-2's whole vocabulary in groups of 8, each token replaced within its group before the prefix.
  const vocab = Array.from({ length: config.vocabSize - 1 }, (_, t) => t);
  const table = { groups: Array.from({ length: Math.floor(vocab.length / 8) }, (_, g) => vocab.slice(8 * g, 8 * g + 8)), placeholder: config.vocabSize - 1 };
  // The vocabulary's last few tokens join the last group.
  table.groups.at(-1)!.push(...vocab.slice(8 * table.groups.length));
  const groups: Defence = { mechanism: 'groups', epsilon: 0, groups: groupsSha256(table) };
  const sanitise = sanitiser(groupMechanism(table, 0), run.key, groupsContext(groups));
  const [plain, defended, sanitised]: number[][] = [[], [], []];
  for (let i = 0; i <= RUNS; i++) {
    let start = performance.now();
    await hiddenOf();
    if (i > 0) plain.push(performance.now() - start);
    start = performance.now();
    defendHidden(await hiddenOf(), ids32, mask32, B, T, config.nEmbd, run);
    if (i > 0) defended.push(performance.now() - start);
    start = performance.now();
    const inputs = BigInt64Array.from(sanitise(ids32, mask32, B, T), BigInt);
    await session.run({ input_ids: new ortWeb.Tensor('int64', inputs, [B, T]), attention_mask: new ortWeb.Tensor('int64', mask, [B, T]) });
    if (i > 0) sanitised.push(performance.now() - start);
  }
  await session.release();
  const [withOut, withDefence, withGroups] = [plain, defended, sanitised].map((t) => Math.round((B * T) / (median(t) / 1000)));
  return {
    setting: describeDefence(run.defence),
    tokensPerSecond: { prefix: withOut, prefixAndDefence: withDefence, groupsAndPrefix: withGroups },
    ratio: round(withDefence / withOut, 3),
    groups: { setting: describeDefence(groups), ratio: round(withGroups / withOut, 3) },
    goal: 'ratio >= 0.95',
  };
}

/**
 * Llama-3.2-1B's first block (cut 1) as a device would run it: int8 weights as ONNX external data (the session gets
 * them beside a few-KB graph; the JS copy is then dropped), the token table outside the graph and streamed once, only
 * the batch's rows kept. Random weights of the published shapes: only the embedding table and block 0 are made.
 */
async function llamaCut1() {
  const c = llamaConfig({ nLayer: 1 });
  const model = initLlama(c, { seed: 0 });
  const options = { cut: 1, weights: 'int8', tokenEmbedding: 'input' } as const;
  const external = exportPrefixExternal(model, options);
  const onnxFile = join(dir, 'llama.onnx');
  await writeFile(onnxFile, external.onnx);
  await writeFile(`${onnxFile}.data`, external.data);
  const inGraphFile = join(dir, 'llama-in-graph.onnx');
  await writeFile(inGraphFile, exportPrefix(model, options));
  const tableFile = join(dir, 'llama-table.safetensors');
  await writeFile(tableFile, serializeSafetensors(tokenTableTensors(tokenTable(model, 'int8'))));
  model.params.clear();
  const cases = [];
  for (const [b, t] of [
    [1, 128],
    [2, 128],
    [1, 256],
    [4, 128],
  ]) {
    log(`llama memory: batch ${b} x ${t}, weights as external data`);
    const m = await memory([
      '--onnx',
      onnxFile,
      '--data',
      `${onnxFile}.data`,
      '--location',
      external.location,
      '--table',
      tableFile,
      '--rows-only',
      '--batch',
      String(b),
      '--seq',
      String(t),
    ]);
    cases.push({ weights: 'external data', batch: b, seq: t, ...m, fitsWorker128MB: m.afterRun.totalMB < WORKER_LIMIT_MB });
  }
  log('llama memory: batch 1 x 128, weights inside the .onnx');
  const inGraph = await memory(['--onnx', inGraphFile, '--table', tableFile, '--rows-only', '--batch', '1', '--seq', '128']);
  cases.push({ weights: 'inside the .onnx', batch: 1, seq: 128, ...inGraph, fitsWorker128MB: inGraph.afterRun.totalMB < WORKER_LIMIT_MB });
  // Throughput at the largest batch that fits, in this process (onnxruntime-web, 1 thread, as in the Worker).
  const fits = cases.filter((x) => x.weights === 'external data' && x.fitsWorker128MB).sort((x, y) => y.batch * y.seq - x.batch * x.seq)[0];
  let llamaTokensPerSecond: number | undefined;
  if (fits) {
    const table = tokenTableFromTensors(parseSafetensors(await readFile(tableFile)).tensors);
    const n = fits.batch * fits.seq;
    const feeds = {
      inputs_embeds: new ortWeb.Tensor(
        'float32',
        lookupTokens(
          table,
          Array.from({ length: n }, (_, i) => (i * 7919) % c.vocabSize),
        ),
        [fits.batch, fits.seq, c.nEmbd],
      ),
      attention_mask: new ortWeb.Tensor('int64', new BigInt64Array(n).fill(1n), [fits.batch, fits.seq]),
    };
    const options = { externalData: [{ path: external.location, data: external.data }] };
    llamaTokensPerSecond = Math.round(await tokensPerSecond(ortWeb, external.onnx, () => feeds, options, [fits.batch, fits.seq, c.nEmbd]));
  }
  return {
    shape: {
      model: 'Llama-3.2-1B (random weights, published shapes)',
      cut: 1,
      weights: 'int8 (per-position activation scales, MatMulInteger), token table outside the graph',
      graphKB: round(external.onnx.byteLength / 1024),
      externalDataMB: round(external.data.byteLength / 2 ** 20),
    },
    deviceBatch: fits ? { batch: fits.batch, seq: fits.seq } : undefined,
    tokensPerSecond: llamaTokensPerSecond,
    totalMB: fits?.afterRun.totalMB,
    fitsWorker128MB: Boolean(fits),
    memory: cases,
    why: 'the weights inside the .onnx sit in the WebAssembly heap twice (protobuf and tensors); as external data, once. Memory grows with batch x sequence (activations and the attention scores).',
  };
}
