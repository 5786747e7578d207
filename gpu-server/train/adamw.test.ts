import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../backends/tfjs/runtime.ts';
import { AdamW, type AdamWSpec } from './adamw.ts';
import { learningRate } from './schedule.ts';

/** torch.optim.AdamW and clip_grad_norm_, written out plainly in float64. */
function referenceAdamW(params: number[][], gradsPerStep: number[][][], lrs: number[], s: AdamWSpec): number[][] {
  const p = params.map((x) => [...x]);
  const m = p.map((x) => x.map(() => 0));
  const v = p.map((x) => x.map(() => 0));
  gradsPerStep.forEach((grads, step) => {
    const t = step + 1;
    const norm = Math.sqrt(grads.flat().reduce((a, g) => a + g * g, 0));
    const clip = s.clipNorm > 0 ? Math.min(1, s.clipNorm / (norm + 1e-6)) : 1;
    p.forEach((param, i) =>
      param.forEach((_, j) => {
        const g = grads[i][j] * clip;
        param[j] *= 1 - lrs[step] * s.weightDecay;
        m[i][j] = s.beta1 * m[i][j] + (1 - s.beta1) * g;
        v[i][j] = s.beta2 * v[i][j] + (1 - s.beta2) * g * g;
        const mHat = m[i][j] / (1 - s.beta1 ** t);
        const vHat = v[i][j] / (1 - s.beta2 ** t);
        param[j] -= (lrs[step] * mHat) / (Math.sqrt(vHat) + s.eps);
      }),
    );
  });
  return p;
}

describe('AdamW', () => {
  beforeAll(() => initBackend('wasm'));

  it('matches the plainly written reference over steps with clipping, decay and a schedule', () => {
    const spec: AdamWSpec = { beta1: 0.9, beta2: 0.98, eps: 1e-8, weightDecay: 0.1, clipNorm: 0.5 };
    const init = [
      [0.5, -1, 2],
      [0.1, 0.2],
    ];
    const grads = Array.from({ length: 6 }, (_, s) => init.map((x, i) => x.map((_, j) => Math.sin(s * 3 + i * 7 + j) * (s === 2 ? 10 : 1))));
    const lrs = grads.map((_, s) => learningRate({ lr: 0.1, warmupSteps: 2, kind: 'cosine', totalSteps: 6 }, s));
    const params = init.map((x, i) => tf.variable(tf.tensor1d(x), true, `p${i}`));
    const opt = new AdamW(spec);
    const norms: number[] = [];
    grads.forEach((g, s) => {
      const { norm } = opt.apply(params, Object.fromEntries(params.map((p, i) => [p.name, tf.tensor1d(g[i])])), lrs[s]);
      norms.push(norm.dataSync()[0]);
    });
    const want = referenceAdamW(init, grads, lrs, spec);
    params.forEach((p, i) => Array.from(p.dataSync()).forEach((x, j) => expect(x).toBeCloseTo(want[i][j], 5)));
    expect(norms[2]).toBeCloseTo(Math.sqrt(grads[2].flat().reduce((a, g) => a + g * g, 0)), 4);
    expect(opt.step).toBe(6);
  });

  it('leaves parameters and moments as they were when the loss, a gradient or the update is not finite', () => {
    const params = [tf.variable(tf.tensor1d([0.5, -1]), true, 'q0')];
    const opt = new AdamW({ clipNorm: 0 });
    const grad = (g: number[]) => ({ q0: tf.tensor1d(g) });
    expect(opt.apply(params, grad([0.1, 0.2]), 0.1).applied.dataSync()[0]).toBe(1);
    const before = [Array.from(params[0].dataSync()), Array.from(opt.m.get('q0')!.dataSync()), Array.from(opt.v.get('q0')!.dataSync())];
    const cases = [
      { g: [NaN, 0.2], loss: 1 },
      { g: [0.1, 0.2], loss: Infinity },
      // Finite, but its square overflows float32: v would become Infinity and every later step NaN.
      { g: [3e30, 0.2], loss: 1 },
    ];
    for (const c of cases) {
      expect(opt.apply(params, grad(c.g), 0.1, tf.scalar(c.loss)).applied.dataSync()[0]).toBe(0);
      expect([Array.from(params[0].dataSync()), Array.from(opt.m.get('q0')!.dataSync()), Array.from(opt.v.get('q0')!.dataSync())]).toEqual(before);
    }
  });

  it('schedules warm up linearly, then decay to zero', () => {
    expect(learningRate({ lr: 1, warmupSteps: 4, kind: 'constant' }, 0)).toBe(0.25);
    expect(learningRate({ lr: 1, warmupSteps: 4, kind: 'constant' }, 100)).toBe(1);
    expect(learningRate({ lr: 1, warmupSteps: 0, kind: 'linear', totalSteps: 10 }, 5)).toBe(0.5);
    expect(learningRate({ lr: 1, warmupSteps: 0, kind: 'linear', totalSteps: 10 }, 10)).toBe(0);
    expect(learningRate({ lr: 1, warmupSteps: 0, kind: 'cosine', totalSteps: 10 }, 5)).toBeCloseTo(0.5);
  });
});
