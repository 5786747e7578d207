import * as tf from '@tensorflow/tfjs';
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
});
