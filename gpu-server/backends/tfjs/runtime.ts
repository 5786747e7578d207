/**
 * The server's backend. TensorFlow.js backends run the whole step; ort-webgpu and ort-cpu run the adapted blocks'
 * forward and backward as ONNX graphs on onnxruntime-node (gpu-server/backends/onnxruntime/), with TF.js's wasm backend keeping the
 * head, the loss and AdamW. `auto` takes the first that initialises, in order: webgpu (a GPU through Dawn's Node
 * binding, npm `webgpu`), tfjs-node-gpu, ort-webgpu (onnxruntime's bundled WebGPU provider), ort-cpu, tfjs-node, wasm,
 * cpu. ort-cpu comes before tfjs-node and wasm because it was measured faster (bench:train on 2 cores: 2.4x wasm, 2.1-2.3x
 * PyTorch; docs/benchmarks); on GPUs, TF.js's webgpu stays first until a GPU day measures the two WebGPU routes
 * (bench/gpu.sh). webgpu is an optional dependency and a host without a GPU adapter falls through; tfjs-node(-gpu) are
 * used where a host installed them (their install downloads libtensorflow from outside the npm registry, so the
 * project does not depend on them). Training code never branches on the backend.
 */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { availableParallelism, tmpdir } from 'node:os';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { DT, GraphBuilder } from '../../../core/onnx/graph.ts';
import type { OrtOptions } from '../onnxruntime/blocks.ts';
import { MAX_WASM_THREADS, setWasmBackend } from './wasm-threads.ts';

export const BACKENDS = ['webgpu', 'tfjs-node-gpu', 'ort-webgpu', 'ort-cpu', 'tfjs-node', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];

export interface BackendChoice {
  backend: BackendName;
  /** Why each backend before the chosen one was skipped. */
  skipped: Array<{ backend: BackendName; reason: string }>;
  /** ort-*: the adapted blocks run on onnxruntime-node with these options (the head, loss and AdamW on TF.js's wasm). */
  blocks?: OrtOptions;
}

/** Runs an ES module script in a child Node: undefined when it succeeds, else what it printed on stderr (or why it failed). */
function failureOf(script: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--input-type=module', '-e', script], { timeout: timeoutMs }, (error, _stdout, stderr) =>
      resolve(error ? stderr || error.message : undefined),
    );
  });
}

/**
 * Asks Dawn for an adapter in a child process first: on a host without a GPU, Dawn's native code prints its Vulkan
 * warnings (with a source path of its build machine) straight to stderr, which would look like a failure in an
 * ordinary CPU run. The child's stderr is kept and its first line becomes the reason instead.
 */
async function probeWebGpu(): Promise<void> {
  const dawn = pathToFileURL(createRequire(import.meta.url).resolve('webgpu')).href;
  const script = `const { create } = await import(${JSON.stringify(dawn)}); process.exitCode = (await create([]).requestAdapter()) ? 0 : 3;`;
  const stderr = await failureOf(script, 30_000);
  if (stderr === undefined) return;
  const detail = stderr
    .split('\n')
    .find((line) => line.trim())
    ?.replace(/^\s*(Warning|Error): /, '');
  throw new Error(`no WebGPU adapter on this host${detail ? ` (${detail.trim()})` : ''}`);
}

/** A one-node graph on the provider, in a child process for webgpu (Dawn's warnings on a host without a GPU). */
async function probeOrt(provider: OrtOptions['provider']): Promise<void> {
  if (provider === 'cpu') {
    await (await ort.InferenceSession.create(identityGraph(), { executionProviders: ['cpu'] })).release();
    return;
  }
  const ortUrl = pathToFileURL(createRequire(import.meta.url).resolve('onnxruntime-node')).href;
  const graph = JSON.stringify(Array.from(identityGraph()));
  const script = `const ort = (await import(${JSON.stringify(ortUrl)})).default; const s = await ort.InferenceSession.create(Uint8Array.from(${graph}), { executionProviders: ['webgpu'] }); await s.release();`;
  const stderr = await failureOf(script, 60_000);
  if (stderr === undefined) return;
  const line = stderr.split('\n').find((l) => /error/i.test(l)) ?? stderr.split('\n').find((l) => l.trim());
  // onnxruntime's messages start with the source location of its build: the reason follows it.
  const detail = line
    ?.replace(/^.*?(<lambda\(\)>|\]) /, '')
    .trim()
    .slice(0, 200);
  throw new Error(`onnxruntime's webgpu provider did not start${detail ? ` (${detail})` : ''}`);
}

async function tryBackend(name: BackendName, threads: number): Promise<OrtOptions | undefined> {
  switch (name) {
    case 'ort-cpu':
    case 'ort-webgpu': {
      const provider = name === 'ort-cpu' ? 'cpu' : 'webgpu';
      await probeOrt(provider);
      // The head, the loss and AdamW are small: TF.js's wasm backend runs them, or its cpu backend where wasm cannot
      // start (a bundle without the .wasm files beside it; bench/gpu.sh packs them).
      await setWasmBackend(threads).catch(async () => {
        if (!(await tf.setBackend('cpu'))) throw new Error('neither the wasm nor the cpu backend of TensorFlow.js initialised');
      });
      return { provider };
    }
    case 'webgpu': {
      // Vulkan's loader complains on every probe without it (the GPU pack's run.sh sets it too).
      process.env.XDG_RUNTIME_DIR ??= tmpdir();
      await probeWebGpu();
      // The backend registers itself only if navigator.gpu exists when it loads, so Dawn goes first.
      const { create, globals } = (await import(/* @vite-ignore */ 'webgpu')) as { create(flags: string[]): GPU; globals: object };
      const gpu = create([]);
      if (!(await gpu.requestAdapter())) throw new Error('no WebGPU adapter on this host');
      Object.assign(globalThis, globals);
      Object.defineProperty(globalThis, 'navigator', { value: { ...(globalThis.navigator ?? {}), gpu }, configurable: true, writable: true });
      await import(/* @vite-ignore */ '@tensorflow/tfjs-backend-webgpu');
      if (!(await tf.setBackend('webgpu'))) throw new Error('the webgpu backend did not initialise');
      return;
    }
    case 'tfjs-node-gpu':
    case 'tfjs-node':
      // These packages register the 'tensorflow' backend when imported.
      await import(/* @vite-ignore */ `@tensorflow/${name}`);
      if (!(await tf.setBackend('tensorflow'))) throw new Error('the tensorflow backend did not initialise');
      return;
    case 'wasm':
      await setWasmBackend(threads);
      return;
    case 'cpu':
      if (!(await tf.setBackend('cpu'))) throw new Error('the cpu backend did not initialise');
  }
}

/** A graph whose one node copies its input: enough to know a provider starts. */
function identityGraph(): Uint8Array {
  const g = new GraphBuilder();
  return g.build({
    name: 'probe',
    opset: 18,
    metadata: {},
    inputs: [{ name: 'x', type: DT.FLOAT, dims: [1] }],
    outputs: [{ name: 'y', from: g.op('Identity', ['x']), type: DT.FLOAT, dims: [1] }],
  });
}

function skipReason(backend: BackendName, err: NodeJS.ErrnoException): string {
  const pkg = backend === 'webgpu' ? 'webgpu' : `@tensorflow/${backend}`;
  if (err.code === 'ERR_MODULE_NOT_FOUND' || err.code === 'MODULE_NOT_FOUND') {
    return backend === 'webgpu' ? 'webgpu is not installed (optional dependency)' : `${pkg} is not installed (docs/development.md: "Install scripts")`;
  }
  // Installed with install scripts off: its script, which downloads libtensorflow, never ran.
  if (err.message.includes('tfjs_binding.node')) return `${pkg} is installed without its native library (docs/development.md: "Install scripts")`;
  return err.message.split('\n')[0];
}

/** `wasmThreads`: threads of the WASM backend (default: every core, at most 8); only its first start counts. */
export async function initBackend(
  wanted: BackendName | 'auto' = 'auto',
  { wasmThreads = Math.min(availableParallelism(), MAX_WASM_THREADS) } = {},
): Promise<BackendChoice> {
  // Checked before any backend is tried: under auto a bad setting would otherwise only skip wasm for the cpu backend.
  if (!(Number.isInteger(wasmThreads) && wasmThreads >= 1 && wasmThreads <= MAX_WASM_THREADS)) {
    throw new RangeError(`WASM threads must be an integer from 1 to ${MAX_WASM_THREADS}, got ${wasmThreads}`);
  }
  const candidates = wanted === 'auto' ? BACKENDS : [wanted];
  const skipped: BackendChoice['skipped'] = [];
  for (const backend of candidates) {
    try {
      const blocks = await tryBackend(backend, wasmThreads);
      return { backend, skipped, ...(blocks ? { blocks } : {}) };
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      skipped.push({ backend, reason: skipReason(backend, err) });
    }
  }
  throw new Error(`no backend initialised: ${skipped.map((s) => `${s.backend}: ${s.reason}`).join('; ')}`);
}
