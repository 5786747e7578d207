/** The training step is the same computation on every backend, and holds no more memory after 1,000 steps than after one. */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { gpt2Config } from '../../core/model/config.ts';
import { initModel } from '../../core/model/init.ts';
import { Random } from '../../core/random.ts';
import { initBackend } from '../tf/backend.ts';
import { Trainer, type TrainBatch, type TrainSpec } from './trainer.ts';

const config = gpt2Config({ nLayer: 3, nEmbd: 16, nHead: 2, nPositions: 16 });
const model = initModel(config, { seed: 1, paramNoise: 0.1 });
const spec: TrainSpec = { lora: { rank: 2, alpha: 4, dropout: 0, targets: ['attn.c_attn', 'mlp.c_fc'] }, optimizer: {}, schedule: { lr: 0.01, warmupSteps: 0, kind: 'constant' }, seed: 2 };
const rng = new Random(3);
const batch: TrainBatch = {
  cut: 1,
  rows: 4,
  seqLen: 8,
  hidden: Float32Array.from({ length: 4 * 8 * 16 }, () => rng.normal()),
  mask: Int32Array.from({ length: 32 }, (_, i) => (i % 8 < 6 || i < 8 ? 1 : 0)),
  labels: Int32Array.from([0, 1, 1, 0]),
};

function oneStep() {
  const t = new Trainer(model, spec, 1);
  // B starts at zero, so give the adapters values that make every gradient non-trivial.
  const w = t.exportAdapter();
  t.loadAdapter({ ...w, b: new Map([...w.b].map(([k, v]) => [k, v.map((_, i) => Math.sin(i) * 0.1)])) });
  const { loss, grads } = t.lossAndGradients(batch, false);
  const out = { loss: loss.dataSync()[0], grads: t.variables().map((v) => Array.from(grads[v.name].dataSync())) };
  tf.dispose([loss, ...Object.values(grads)]);
  t.dispose();
  return out;
}

describe('training on each CPU backend', () => {
  it('one step gives the same loss and LoRA gradients on wasm and cpu (1e-4 relative)', async () => {
    await initBackend('wasm');
    const wasm = oneStep();
    await initBackend('cpu');
    const cpu = oneStep();
    await initBackend('wasm');
    expect(Math.abs(wasm.loss - cpu.loss) / Math.abs(cpu.loss)).toBeLessThan(1e-4);
    wasm.grads.forEach((g, i) => {
      const scale = Math.max(...cpu.grads[i].map(Math.abs));
      expect(scale).toBeGreaterThan(0);
      g.forEach((x, j) => expect(Math.abs(x - cpu.grads[i][j])).toBeLessThan(1e-4 * scale));
    });
  });

  it.each(['wasm', 'cpu'] as const)('%s: memory is the same after 1,000 steps as after the first', async (backend) => {
    await initBackend(backend);
    const t = new Trainer(model, { ...spec, lora: { ...spec.lora, dropout: 0.1 } }, 1);
    t.trainStep(batch);
    const after1 = tf.memory();
    for (let i = 1; i < 1000; i++) t.trainStep(batch);
    const after1000 = tf.memory();
    expect(after1000.numTensors).toBe(after1.numTensors);
    expect(after1000.numBytes).toBe(after1.numBytes);
    t.dispose();
    await initBackend('wasm');
  });
});
