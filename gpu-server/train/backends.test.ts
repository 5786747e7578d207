/** The training step is the same computation on every backend, and holds no more memory after 1,000 steps than after one. */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { initBackend } from '../backends/tfjs/runtime.ts';
import { maxRelativeDifference, tinySetup, tinyStepGradients } from '../../tests/support/step-parity.ts';
import { Trainer } from './trainer.ts';

const { model, spec, batch } = tinySetup();

describe('training on each CPU backend', () => {
  it('one step gives the same loss and LoRA gradients on wasm and cpu (1e-4 relative)', async () => {
    await initBackend('wasm');
    const wasm = await tinyStepGradients();
    await initBackend('cpu');
    const cpu = await tinyStepGradients();
    await initBackend('wasm');
    expect(maxRelativeDifference(wasm, cpu)).toBeLessThan(1e-4);
    // The comparison sees a change in any gradient.
    expect(maxRelativeDifference({ ...wasm, grads: wasm.grads.map((g, i) => (i === 1 ? g.map((x) => x * 1.001) : g)) }, cpu)).toBeGreaterThan(1e-4);
  });

  it.each(['wasm', 'cpu'] as const)(
    '%s: memory is the same after 1,000 steps as after the first',
    async (backend) => {
      await initBackend(backend);
      const t = new Trainer(model, { ...spec, lora: { ...spec.lora, dropout: 0.1 } }, 1);
      await t.trainStep(batch);
      const after1 = tf.memory();
      for (let i = 1; i < 1000; i++) await t.trainStep(batch);
      const after1000 = tf.memory();
      expect(after1000.numTensors).toBe(after1.numTensors);
      expect(after1000.numBytes).toBe(after1.numBytes);
      t.dispose();
      await initBackend('wasm');
      // A memory test, not a timed one: on a busy 2-core machine the wasm backend's threads wait on each other.
    },
    300_000,
  );
});
