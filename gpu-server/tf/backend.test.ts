import { execFile } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { getThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { describe, expect, it } from 'vitest';
import { BACKENDS, initBackend } from './backend.ts';

describe('TensorFlow.js backend selection', () => {
  it('auto takes the first backend that initialises and says why each one before it was skipped', async () => {
    const choice = await initBackend('auto');
    expect(tf.getBackend()).toBe(choice.backend === 'tfjs-node' || choice.backend === 'tfjs-node-gpu' ? 'tensorflow' : choice.backend);
    expect(choice.skipped.map((s) => s.backend)).toEqual(BACKENDS.slice(0, BACKENDS.indexOf(choice.backend)));
    for (const s of choice.skipped) expect(s.reason).toMatch(/\w/);
    // The WASM backend always installs, so auto never falls back further than it.
    expect(BACKENDS.indexOf(choice.backend)).toBeLessThanOrEqual(BACKENDS.indexOf('wasm'));
  });

  it('a named backend is used as asked, and computes the same as another', async () => {
    const x = [1, 2, 3, 4];
    await initBackend('cpu');
    expect(tf.getBackend()).toBe('cpu');
    const onCpu = tf.matMul(tf.tensor2d(x, [2, 2]), tf.tensor2d(x, [2, 2])).dataSync();
    await initBackend('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(Array.from(tf.matMul(tf.tensor2d(x, [2, 2]), tf.tensor2d(x, [2, 2])).dataSync())).toEqual(Array.from(onCpu));
  });

  it('a named backend that cannot initialise fails naming it and why', async () => {
    for (const name of ['webgpu', 'tfjs-node', 'tfjs-node-gpu'] as const) {
      const result = await initBackend(name).catch((e: Error) => e);
      if (result instanceof Error) expect(result.message).toMatch(new RegExp(`^no TensorFlow.js backend initialised: ${name}: .+`));
      else expect(tf.getBackend()).toBe(name === 'webgpu' ? 'webgpu' : 'tensorflow'); // a host where it can run
    }
    await initBackend('wasm');
  });

  it('probing for a GPU is quiet: a host without one gets a reason, not the native warnings of Dawn on stderr', async () => {
    // A fresh process, so that Dawn is loaded by this probe and nothing earlier.
    const script = `const { initBackend } = await import('./gpu-server/tf/backend.ts');
      console.log(JSON.stringify(await initBackend('auto', { wasmThreads: 1 })));`;
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script]);
    const choice = JSON.parse(stdout.trim().split('\n').at(-1)!) as Awaited<ReturnType<typeof initBackend>>;
    expect(stderr).not.toMatch(/Vulkan|dawn|Warning/i);
    if (choice.backend !== 'webgpu') expect(choice.skipped[0]).toMatchObject({ backend: 'webgpu', reason: expect.stringMatching(/^no WebGPU adapter on this host/) });
  });

  it('the WASM backend runs on every core by default, and single-threaded when asked (its first start decides)', async () => {
    await initBackend('wasm');
    expect(getThreadsCount()).toBe(Math.min(availableParallelism(), 8));
    // A fresh process, since the first start decides the build.
    const script = `const { initBackend } = await import('./gpu-server/tf/backend.ts'); const { getThreadsCount } = await import('@tensorflow/tfjs-backend-wasm');
      const tf = await import('@tensorflow/tfjs'); await initBackend('wasm', { wasmThreads: 1 });
      console.log(JSON.stringify({ threads: getThreadsCount(), product: Array.from(tf.matMul(tf.ones([2, 3]), tf.ones([3, 2])).dataSync()) }));`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script]);
    expect(JSON.parse(stdout.trim().split('\n').at(-1)!)).toEqual({ threads: 1, product: [3, 3, 3, 3] });
    // A bad thread count fails whichever backend is asked for, rather than sending auto past wasm to cpu.
    for (const wanted of ['auto', 'wasm'] as const) await expect(initBackend(wanted, { wasmThreads: 1.5 })).rejects.toThrow('WASM threads must be an integer from 1 to 8, got 1.5');
  });
});
