/** The wasm backend's replacement BatchMatMul against the cpu backend's, on every layout the model produces. */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { initBackend } from './runtime.ts';

const cases: Array<{ a: number[]; b: number[]; transposeA?: boolean; transposeB?: boolean }> = [
  { a: [2, 3, 5, 4], b: [2, 3, 4, 6] }, // attention: probabilities x values
  { a: [2, 3, 5, 4], b: [2, 3, 6, 4], transposeB: true }, // scores: q k^T
  { a: [2, 3, 4, 5], b: [2, 3, 4, 6], transposeA: true }, // backward: p^T dy
  { a: [4, 3, 5], b: [4, 6, 3], transposeA: true, transposeB: true },
  { a: [7, 5], b: [5, 3] }, // plain 2-D: the original kernel
  { a: [2, 7, 5], b: [5, 3] }, // broadcast batch: the original kernel
  { a: [1, 7, 5], b: [1, 5, 3] },
  { a: [3, 0, 5], b: [3, 5, 2] }, // empty: the original kernel
];

async function product(backend: 'wasm' | 'cpu', c: (typeof cases)[number]) {
  await initBackend(backend);
  const size = (s: number[]) => s.reduce((x, y) => x * y, 1);
  const a = tf.tensor(
    Array.from({ length: size(c.a) }, (_, i) => Math.sin(i * 0.7)),
    c.a,
  );
  const b = tf.tensor(
    Array.from({ length: size(c.b) }, (_, i) => Math.cos(i * 0.3)),
    c.b,
  );
  const out = tf.matMul(a, b, c.transposeA, c.transposeB);
  const result = { shape: out.shape, values: Array.from(out.dataSync()) };
  tf.dispose([a, b, out]);
  return result;
}

describe('wasm kernels', () => {
  it("are the replacements, not the package's own", async () => {
    await initBackend('wasm');
    expect(tf.getKernel('BatchMatMul', 'wasm')?.kernelFunc.name).toBe('batchMatMulOnXnnpack');
    const x = tf.tensor([1, 2, 3]);
    const y = x.clone(); // Identity
    expect((tf.backend() as unknown as { getMemoryOffset(d: object): number }).getMemoryOffset(y.dataId)).toBe(
      (tf.backend() as unknown as { getMemoryOffset(d: object): number }).getMemoryOffset(x.dataId),
    );
    x.dispose();
    expect(Array.from(y.dataSync())).toEqual([1, 2, 3]); // shared data outlives the first tensor
    y.dispose();
  });

  it.each(cases)('equals the cpu backend for %o', async (c) => {
    const want = await product('cpu', c);
    const tensorsBefore = (await initBackend('wasm'), tf.memory().numTensors);
    const got = await product('wasm', c);
    expect(got.shape).toEqual(want.shape);
    got.values.forEach((v, i) => expect(Math.abs(v - want.values[i]!)).toBeLessThan(1e-5 * Math.max(1, Math.abs(want.values[i]!))));
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  });

  it('keeps its gradient: autodiff of a batched product matches the cpu backend', async () => {
    const grads = async (backend: 'wasm' | 'cpu') => {
      await initBackend(backend);
      const q = tf.tensor4d(
        Array.from({ length: 2 * 2 * 3 * 4 }, (_, i) => Math.sin(i)),
        [2, 2, 3, 4],
      );
      const k = tf.tensor4d(
        Array.from({ length: 2 * 2 * 3 * 4 }, (_, i) => Math.cos(i)),
        [2, 2, 3, 4],
      );
      const g = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.square(tf.matMul(x, y, false, true))))([q, k]);
      return g.map((t) => Array.from(t.dataSync()));
    };
    const want = await grads('cpu');
    const got = await grads('wasm');
    got.flat().forEach((v, i) => expect(v).toBeCloseTo(want.flat()[i]!, 4));
  });
});
