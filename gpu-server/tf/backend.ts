/**
 * TensorFlow.js backend selection. `auto` takes the first that initialises, in order: webgpu (a GPU through Dawn's
 * Node binding, npm `webgpu`), tfjs-node-gpu, tfjs-node, wasm, cpu. webgpu is an optional dependency and a host
 * without a GPU adapter falls through; tfjs-node(-gpu) are used where a host installed them (their install downloads
 * libtensorflow from outside the npm registry, so the project does not depend on them). Training code never
 * branches on the backend.
 */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { availableParallelism, tmpdir } from 'node:os';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { MAX_WASM_THREADS, setWasmBackend } from './wasm-threads.ts';

export const BACKENDS = ['webgpu', 'tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];

export interface BackendChoice {
  backend: BackendName;
  /** Why each backend before the chosen one was skipped. */
  skipped: Array<{ backend: BackendName; reason: string }>;
}

/**
 * Asks Dawn for an adapter in a child process first: on a host without a GPU, Dawn's native code prints its Vulkan
 * warnings (with a source path of its build machine) straight to stderr, which would look like a failure in an
 * ordinary CPU run. The child's stderr is kept and its first line becomes the reason instead.
 */
async function probeWebGpu(): Promise<void> {
  const dawn = pathToFileURL(createRequire(import.meta.url).resolve('webgpu')).href;
  const script = `const { create } = await import(${JSON.stringify(dawn)}); process.exitCode = (await create([]).requestAdapter()) ? 0 : 3;`;
  const stderr = await new Promise<string | undefined>((resolve) => {
    execFile(process.execPath, ['--input-type=module', '-e', script], { timeout: 30_000 }, (error, _stdout, stderr) => resolve(error ? stderr || error.message : undefined));
  });
  if (stderr === undefined) return;
  const detail = stderr.split('\n').find((line) => line.trim())?.replace(/^\s*(Warning|Error): /, '');
  throw new Error(`no WebGPU adapter on this host${detail ? ` (${detail.trim()})` : ''}`);
}

async function tryBackend(name: BackendName, threads: number): Promise<void> {
  switch (name) {
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

function skipReason(backend: BackendName, err: NodeJS.ErrnoException): string {
  const pkg = backend === 'webgpu' ? 'webgpu' : `@tensorflow/${backend}`;
  if (err.code === 'ERR_MODULE_NOT_FOUND' || err.code === 'MODULE_NOT_FOUND') {
    return backend === 'webgpu' ? 'webgpu is not installed (optional dependency)' : `${pkg} is not installed (README: "Install scripts")`;
  }
  // Installed with install scripts off: its script, which downloads libtensorflow, never ran.
  if (err.message.includes('tfjs_binding.node')) return `${pkg} is installed without its native library (README: "Install scripts")`;
  return err.message.split('\n')[0];
}

/** `wasmThreads`: threads of the WASM backend (default: every core, at most 8); only its first start counts. */
export async function initBackend(wanted: BackendName | 'auto' = 'auto', { wasmThreads = Math.min(availableParallelism(), MAX_WASM_THREADS) } = {}): Promise<BackendChoice> {
  // Checked before any backend is tried: under auto a bad setting would otherwise only skip wasm for the cpu backend.
  if (!(Number.isInteger(wasmThreads) && wasmThreads >= 1 && wasmThreads <= MAX_WASM_THREADS)) {
    throw new RangeError(`WASM threads must be an integer from 1 to ${MAX_WASM_THREADS}, got ${wasmThreads}`);
  }
  const candidates = wanted === 'auto' ? BACKENDS : [wanted];
  const skipped: BackendChoice['skipped'] = [];
  for (const backend of candidates) {
    try {
      await tryBackend(backend, wasmThreads);
      return { backend, skipped };
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      skipped.push({ backend, reason: skipReason(backend, err) });
    }
  }
  throw new Error(`no TensorFlow.js backend initialised: ${skipped.map((s) => `${s.backend}: ${s.reason}`).join('; ')}`);
}
