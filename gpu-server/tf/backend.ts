/**
 * TensorFlow.js backend selection. `auto` takes the first that initialises, in order: webgpu (a GPU through Dawn's
 * Node binding, npm `webgpu`), tfjs-node-gpu, tfjs-node, wasm, cpu. The GPU and tfjs-node packages are optional and
 * often absent; a host without a GPU adapter falls through. Training code never branches on the backend.
 */
import { availableParallelism, tmpdir } from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { MAX_WASM_THREADS, setWasmBackend } from './wasm-threads.ts';

export const BACKENDS = ['webgpu', 'tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];

export interface BackendChoice {
  backend: BackendName;
  /** Why each backend before the chosen one was skipped. */
  skipped: Array<{ backend: BackendName; reason: string }>;
}

async function tryBackend(name: BackendName, threads: number): Promise<void> {
  switch (name) {
    case 'webgpu': {
      // The backend registers itself only if navigator.gpu exists when it loads, so Dawn goes first.
      const { create, globals } = (await import(/* @vite-ignore */ 'webgpu')) as { create(flags: string[]): GPU; globals: object };
      // Vulkan's loader complains on every probe without it (the GPU pack's run.sh sets it too).
      process.env.XDG_RUNTIME_DIR ??= tmpdir();
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
      const reason = err.code === 'ERR_MODULE_NOT_FOUND' ? `${backend === 'webgpu' ? 'webgpu' : `@tensorflow/${backend}`} is not installed (optional dependency)` : err.message.split('\n')[0];
      skipped.push({ backend, reason });
    }
  }
  throw new Error(`no TensorFlow.js backend initialised: ${skipped.map((s) => `${s.backend}: ${s.reason}`).join('; ')}`);
}
