/**
 * Child process of bench/device.ts: loads one prefix into onnxruntime-web (WASM, 1 thread), runs one batch and
 * prints JSON with the memory a Cloudflare Worker would be charged for: the WebAssembly linear memory plus the JS
 * heap and ArrayBuffers of this isolate (STACK-NOTES: the Worker limit counts these, not Node's own RSS).
 * usage: tsx bench/prefix-memory.ts PREFIX.onnx [TOKEN_TABLE.safetensors] B T
 */
import { readFile } from 'node:fs/promises';

const memories: WebAssembly.Memory[] = [];
const NativeMemory = WebAssembly.Memory;
WebAssembly.Memory = function (descriptor: WebAssembly.MemoryDescriptor) {
  const m = new NativeMemory(descriptor);
  memories.push(m);
  return m;
} as unknown as typeof WebAssembly.Memory;
const nativeInstantiate = WebAssembly.instantiate;
WebAssembly.instantiate = (async (...args: Parameters<typeof WebAssembly.instantiate>) => {
  const result = (await nativeInstantiate(...args)) as unknown as WebAssembly.WebAssemblyInstantiatedSource | WebAssembly.Instance;
  const instance = 'instance' in result ? result.instance : result;
  for (const value of Object.values(instance.exports)) if (value instanceof NativeMemory) memories.push(value);
  return result;
}) as typeof WebAssembly.instantiate;

const ort = await import('onnxruntime-web');
const { lookupTokens, tokenTableFromTensors } = await import('../core/onnx/embedding.ts');
const { parseSafetensors } = await import('../core/tensors/safetensors.ts');

const [onnxFile, ...rest] = process.argv.slice(2);
const tableFile = rest.length === 3 ? rest.shift() : undefined;
const [B, T] = rest.map(Number);
const wasmBytes = () => memories.reduce((a, m) => a + m.buffer.byteLength, 0);
const isolateBytes = () => {
  const m = process.memoryUsage();
  return wasmBytes() + m.heapUsed + m.arrayBuffers - (memories.length ? 0 : 0);
};
const MB = (n: number) => Math.round((n / 2 ** 20) * 10) / 10;

ort.env.wasm.numThreads = 1;
let session: Awaited<ReturnType<typeof ort.InferenceSession.create>>;
{
  // The model bytes are dropped once the session exists, as the device worker does.
  session = await ort.InferenceSession.create(await readFile(onnxFile), JSON.parse(process.env.ORT_OPTIONS ?? '{}'));
}
const table = tableFile ? tokenTableFromTensors(parseSafetensors(await readFile(tableFile)).tensors) : undefined;
globalThis.gc?.();
const afterCreate = { wasm: MB(wasmBytes()), isolate: MB(isolateBytes()) };
const ids = BigInt64Array.from({ length: B * T }, (_, i) => BigInt((i * 7919) % 50000));
const mask = new ort.Tensor('int64', new BigInt64Array(B * T).fill(1n), [B, T]);
const feeds = table
  ? { inputs_embeds: new ort.Tensor('float32', lookupTokens(table, ids), [B, T, table.nEmbd]), attention_mask: mask }
  : { input_ids: new ort.Tensor('int64', ids, [B, T]), attention_mask: mask };
await session.run(feeds);
globalThis.gc?.();
const m = process.memoryUsage();
console.log(
  JSON.stringify({
    wasmMemoryMB: { afterCreate: afterCreate.wasm, afterRun: MB(wasmBytes()) },
    jsHeapMB: MB(m.heapUsed),
    arrayBuffersMB: MB(m.arrayBuffers),
    workerChargedMB: { afterCreate: afterCreate.isolate, afterRun: MB(isolateBytes()) },
    processMaxRssMB: MB(process.resourceUsage().maxRSS * 1024),
  }),
);
