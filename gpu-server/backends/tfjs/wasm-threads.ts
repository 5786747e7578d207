/**
 * The WASM backend on several cores under Node. tfjs-backend-wasm ships a multi-threaded build (XNNPACK on a
 * pthread pool) but turns it off under Node (tfjs#3830): its pthread workers start from Blob URLs, which Node's
 * worker_threads cannot load. Here they start from wasm-pthread-worker.cjs instead, and the threaded build runs as
 * it does in a browser; a MatMul [1024, 768] x [768, 3072] goes from ~43 to ~78 GFLOP/s on two cores.
 */
import os from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { getThreadsCount, setThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { installWasmKernels } from './wasm-kernels.ts';

/** tfjs's build starts a pool of 8 workers and never uses more threads than that. */
export const MAX_WASM_THREADS = 8;

let started = false;

/**
 * Initialises the 'wasm' backend with `threads` threads, 1 to MAX_WASM_THREADS (1: the single-threaded SIMD build;
 * initBackend checks the range). Only the first initialisation in a process counts: the backend cannot change its
 * build afterwards. Returns the threads in use.
 */
export async function setWasmBackend(threads: number): Promise<number> {
  if (started) {
    if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend did not initialise');
    return getThreadsCount();
  }
  started = true;
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', threads > 1);
  setThreadsCount(threads);
  const workerScript = new URL('./wasm-pthread-worker.cjs', import.meta.url).pathname;
  const { createObjectURL } = URL;
  const { cpus } = os;
  const hadWorker = 'Worker' in globalThis;
  // Only while the backend starts, which is when it makes its whole worker pool: tfjs makes the workers from Blob
  // URLs, and the wasm sizes its thread pool as half of os.cpus() (it assumes two hyperthreads per core), which on
  // a 2-core host would mean one thread. Its Node glue also sets a global Worker, removed afterwards.
  URL.createObjectURL = (blob) => (blob instanceof Blob && blob.type === 'application/javascript' ? workerScript : createObjectURL(blob));
  os.cpus = () => Array.from({ length: 2 * threads }, (_, i) => cpus()[i % cpus().length]!);
  try {
    if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend did not initialise');
  } finally {
    URL.createObjectURL = createObjectURL;
    os.cpus = cpus;
    if (!hadWorker) delete (globalThis as { Worker?: unknown }).Worker;
  }
  // The pool's threads wait for work forever; they must not keep the process alive. (The single-threaded build has none.)
  const { PThread } = (tf.backend() as unknown as { wasm: { PThread?: { runningWorkers: Array<{ unref(): void }> } } }).wasm;
  for (const worker of PThread?.runningWorkers ?? []) worker.unref();
  installWasmKernels();
  return getThreadsCount();
}
