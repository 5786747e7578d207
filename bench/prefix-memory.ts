/**
 * Child process of bench/device.ts: loads one prefix into onnxruntime-web (WASM, 1 thread), runs one batch, and
 * prints JSON with what a Cloudflare Worker would be charged for: WebAssembly linear memory plus this isolate's JS
 * heap and ArrayBuffers (docs/stack.md: the Worker limit counts these, not Node's own RSS).
 * The device's modules are imported under the Worker bundle's aliases (bench/worker-aliases.ts), so the JS heap is
 * theirs as the Worker holds it.
 * usage: node --expose-gc --import tsx bench/prefix-memory.ts --onnx F.onnx --batch B --seq T [--table F.safetensors [--rows-only]]
 *        [--data F.onnx.data]   (the weights as ONNX external data: the session gets them beside the graph, then the
 *                                JS copy is dropped, as a device would)
 *        [--without-worker-aliases]   (the heap of the same modules as Node imports them, for reference)
 */
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { registerWorkerAliases } from './worker-aliases.ts';

// Record every WebAssembly memory, created from JS or exported by an instance.
const memories = new Set<WebAssembly.Memory>();
const NativeMemory = WebAssembly.Memory;
WebAssembly.Memory = function (descriptor: WebAssembly.MemoryDescriptor) {
  const m = new NativeMemory(descriptor);
  memories.add(m);
  return m;
} as unknown as typeof WebAssembly.Memory;
const nativeInstantiate = WebAssembly.instantiate;
WebAssembly.instantiate = (async (...args: Parameters<typeof WebAssembly.instantiate>) => {
  const result = (await nativeInstantiate(...args)) as unknown as WebAssembly.WebAssemblyInstantiatedSource | WebAssembly.Instance;
  const instance = 'instance' in result ? result.instance : result;
  for (const value of Object.values(instance.exports)) if (value instanceof NativeMemory) memories.add(value);
  return result;
}) as typeof WebAssembly.instantiate;

const { values: args } = parseArgs({
  options: {
    onnx: { type: 'string' },
    data: { type: 'string' },
    location: { type: 'string', default: 'prefix.onnx.data' },
    table: { type: 'string' },
    'rows-only': { type: 'boolean' },
    batch: { type: 'string' },
    seq: { type: 'string' },
    'without-worker-aliases': { type: 'boolean' },
  },
});
if (!args['without-worker-aliases']) registerWorkerAliases();

const ort = await import('onnxruntime-web');
const { lookupTokens, tokenTableFromTensors } = await import('../core/onnx/embedding.ts');
const { parseSafetensors } = await import('../core/tensors/safetensors.ts');
const { readTable, sha256Digest } = await import('../workers/device/src/table-stream.ts');
const { inspectSegment } = await import('../workers/device/src/segment-check.ts');
// The rest of what the Worker's modules import at its start (tokenizers, policy, defences, router).
for (const m of [
  '../workers/device/src/encode.ts',
  '../core/tokenizer/hf.ts',
  '../core/wire/policy.ts',
  '../core/privacy/defend.ts',
  '../core/privacy/groups.ts',
  'hono',
])
  await import(m);
const [B, T] = [Number(args.batch), Number(args.seq)];
const MB = (n: number) => Math.round((n / 2 ** 20) * 10) / 10;
const wasmBytes = () => [...memories].reduce((a, m) => a + m.buffer.byteLength, 0);
const charged = () => {
  globalThis.gc?.();
  const m = process.memoryUsage();
  return { wasmMB: MB(wasmBytes()), jsHeapMB: MB(m.heapUsed), arrayBuffersMB: MB(m.arrayBuffers), totalMB: MB(wasmBytes() + m.heapUsed + m.arrayBuffers) };
};

const afterImports = charged();
ort.env.wasm.numThreads = 1;
// Of the graph's bytes only what its table must be is kept, as a device keeps them: the session holds its own copy.
const { session, inspected } = await (async (graph: Buffer) => ({
  session: await ort.InferenceSession.create(graph, args.data ? { externalData: [{ path: args.location!, data: await readFile(args.data) }] } : {}),
  inspected: inspectSegment(graph),
}))(await readFile(args.onnx!));
const ids = BigInt64Array.from({ length: B * T }, (_, i) => BigInt((i * 7919) % 50000));
let table;
if (args.table && args['rows-only']) {
  // As a device reads it (workers/device/src/table-stream.ts): the whole file streamed once, only the batch's rows kept.
  const stream = Readable.toWeb(createReadStream(args.table)) as ReadableStream<Uint8Array>;
  if ('refusal' in inspected) throw new Error(`${args.onnx}: ${inspected.refusal}`);
  if (!inspected.table) throw new Error(`${args.onnx}: takes no token table`);
  const got = await readTable(stream, (await stat(args.table)).size, Array.from(ids, Number), inspected.table, sha256Digest());
  if ('problem' in got) throw new Error(`${args.table}: ${got.problem}`);
  table = got.rows;
} else if (args.table) {
  table = tokenTableFromTensors(parseSafetensors(await readFile(args.table)).tensors, args.table);
}
const afterLoad = charged();
const mask = new ort.Tensor('int64', new BigInt64Array(B * T).fill(1n), [B, T]);
const feeds: Record<string, InstanceType<typeof ort.Tensor>> = table
  ? { inputs_embeds: new ort.Tensor('float32', lookupTokens(table, ids), [B, T, table.nEmbd]), attention_mask: mask }
  : { input_ids: new ort.Tensor('int64', ids, [B, T]), attention_mask: mask };
await session.run(feeds);
console.log(JSON.stringify({ afterImports, afterLoad, afterRun: charged() }));
