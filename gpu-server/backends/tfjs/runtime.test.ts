import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { getThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { describe, expect, it } from 'vitest';
import { BACKENDS, initBackend } from './runtime.ts';

/** Whether a host installed this package (the project does not depend on tfjs-node; see backend.ts). */
function installed(pkg: string): boolean {
  try {
    createRequire(import.meta.url).resolve(pkg);
    return true;
  } catch {
    return false;
  }
}

const notInstalled = (name: 'tfjs-node' | 'tfjs-node-gpu') => `@tensorflow/${name} is not installed (docs/development.md: "Install scripts")`;
const UNINSTALLED = (['tfjs-node-gpu', 'tfjs-node'] as const).filter((name) => !installed(`@tensorflow/${name}`));

describe('TensorFlow.js backend selection', () => {
  it('auto takes the first backend that initialises and says why each one before it was skipped', async () => {
    const choice = await initBackend('auto');
    const tfBackend = { 'tfjs-node': 'tensorflow', 'tfjs-node-gpu': 'tensorflow', 'ort-cpu': 'wasm', 'ort-webgpu': 'wasm' } as Record<string, string>;
    expect(tf.getBackend()).toBe(tfBackend[choice.backend] ?? choice.backend);
    expect(choice.skipped.map((s) => s.backend)).toEqual(BACKENDS.slice(0, BACKENDS.indexOf(choice.backend)));
    const named = { webgpu: 'WebGPU', 'ort-webgpu': "onnxruntime's webgpu provider" } as Record<string, string>;
    for (const s of choice.skipped) expect(s.reason).toMatch(named[s.backend] ?? `@tensorflow/${s.backend} `);
    // onnxruntime's CPU provider always starts, so auto never falls back further than it.
    expect(BACKENDS.indexOf(choice.backend)).toBeLessThanOrEqual(BACKENDS.indexOf('ort-cpu'));
    if (choice.backend.startsWith('ort-')) expect(choice.blocks?.provider).toBe(choice.backend.slice(4));
    expect(Array.from(tf.matMul(tf.ones([2, 3]), tf.ones([3, 2])).dataSync())).toEqual([3, 3, 3, 3]);
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

  it('a named tfjs-node that is not installed fails naming the package, and leaves the backend in use', async () => {
    await initBackend('cpu');
    for (const name of UNINSTALLED) await expect(initBackend(name)).rejects.toThrow(`no backend initialised: ${name}: ${notInstalled(name)}`);
    expect(tf.getBackend()).toBe('cpu');
    await initBackend('wasm');
  });

  it('without a GPU, webgpu and ort-webgpu fail with the reason and auto falls through to ort-cpu, quietly: no native warnings of Dawn on stderr', async () => {
    // A fresh process, so that Dawn is loaded by this probe and nothing earlier; Vulkan's drivers hidden from it, so
    // that it has no adapter on a GPU host too.
    const script = `const { initBackend } = await import('./gpu-server/backends/tfjs/runtime.ts');
      const webgpu = await initBackend('webgpu').then(() => 'started', (e) => e.message);
      console.log(JSON.stringify({ webgpu, auto: await initBackend('auto', { wasmThreads: 1 }) }));`;
    const env = { ...process.env, VK_ICD_FILENAMES: '/nonexistent.json', VK_DRIVER_FILES: '/nonexistent.json' };
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env });
    const { webgpu, auto } = JSON.parse(stdout.trim().split('\n').at(-1)!) as { webgpu: string; auto: Awaited<ReturnType<typeof initBackend>> };
    expect(stderr).not.toMatch(/Vulkan|dawn|Warning/i);
    expect(webgpu).toMatch(/^no backend initialised: webgpu: no WebGPU adapter on this host/);
    // On a host without tfjs-node-gpu, auto ends at ort-cpu, its blocks on onnxruntime's CPU provider.
    const unavailable = [
      { backend: 'webgpu', reason: expect.stringMatching(/^no WebGPU adapter on this host/) },
      ...(UNINSTALLED.includes('tfjs-node-gpu') ? [{ backend: 'tfjs-node-gpu', reason: notInstalled('tfjs-node-gpu') }] : []),
      { backend: 'ort-webgpu', reason: expect.stringMatching(/^onnxruntime's webgpu provider did not start/) },
    ];
    if (UNINSTALLED.includes('tfjs-node-gpu')) expect(auto).toEqual({ backend: 'ort-cpu', skipped: unavailable, blocks: { provider: 'cpu' } });
    else expect(auto.skipped).toEqual(unavailable.slice(0, 1));
  });

  it('the WASM backend runs on every core by default, and single-threaded when asked (its first start decides)', async () => {
    await initBackend('wasm');
    expect(getThreadsCount()).toBe(Math.min(availableParallelism(), 8));
    // A fresh process, since the first start decides the build.
    const script = `const { initBackend } = await import('./gpu-server/backends/tfjs/runtime.ts'); const { getThreadsCount } = await import('@tensorflow/tfjs-backend-wasm');
      const tf = await import('@tensorflow/tfjs'); await initBackend('wasm', { wasmThreads: 1 });
      console.log(JSON.stringify({ threads: getThreadsCount(), product: Array.from(tf.matMul(tf.ones([2, 3]), tf.ones([3, 2])).dataSync()) }));`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script]);
    expect(JSON.parse(stdout.trim().split('\n').at(-1)!)).toEqual({ threads: 1, product: [3, 3, 3, 3] });
    // A bad thread count fails whichever backend is asked for, rather than sending auto past wasm to cpu.
    for (const wanted of ['auto', 'wasm'] as const)
      await expect(initBackend(wanted, { wasmThreads: 1.5 })).rejects.toThrow('WASM threads must be an integer from 1 to 8, got 1.5');
  });
});
