/** The differentiable steps of ops.ts against autodiff of the plain ops they replace. */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { maxAbsDiff } from '../../../tests/fixtures.ts';
import { initBackend } from './runtime.ts';
import { FrozenLinear, gatherRows, gelu, lowRank } from './ops.ts';

describe('differentiable steps (wasm backend) against the plain ops', () => {
  beforeAll(() => initBackend('wasm'));

  it('a frozen linear gives the same value and input gradient as autodiff of a plain MatMul', () => {
    const x = tf.randomNormal([6, 8], 0, 1, 'float32', 3) as tf.Tensor2D;
    const w = tf.randomNormal([8, 5], 0, 1, 'float32', 4) as tf.Tensor2D;
    const b = tf.randomNormal([5], 0, 1, 'float32', 5) as tf.Tensor1D;
    const dy = tf.randomNormal([6, 5], 0, 1, 'float32', 6);
    const frozen = new FrozenLinear(w.clone(), b.clone());
    const loss = (f: (x: tf.Tensor2D) => tf.Tensor) => (x: tf.Tensor) => tf.sum(tf.mul(f(x as tf.Tensor2D), dy));
    const plain = (x: tf.Tensor2D) => tf.add(tf.matMul(x, w), b);
    expect(maxAbsDiff(frozen.apply(x).dataSync(), plain(x).dataSync())).toBeLessThan(1e-6);
    const got = tf
      .grad(loss((x) => frozen.apply(x)))(x)
      .dataSync();
    const want = tf.grad(loss(plain))(x).dataSync();
    expect(maxAbsDiff(got, want)).toBeLessThan(1e-5);
  });

  it('GELU through sigmoid equals the tanh form in value and gradient (1e-4)', () => {
    const x = tf.randomNormal([5, 7], 0, 2, 'float32', 9) as tf.Tensor2D;
    const dy = tf.randomNormal([5, 7], 0, 1, 'float32', 10);
    const plain = (v: tf.Tensor) => tf.mul(tf.mul(v, 0.5), tf.add(1, tf.tanh(tf.mul(tf.add(v, tf.mul(tf.pow(v, 3), 0.044715)), Math.sqrt(2 / Math.PI)))));
    expect(maxAbsDiff(gelu(x).dataSync(), plain(x).dataSync())).toBeLessThan(1e-5);
    const g = (f: (v: tf.Tensor) => tf.Tensor) =>
      tf
        .grad((v: tf.Tensor) => tf.sum(tf.mul(f(v), dy)))(x)
        .dataSync();
    expect(
      maxAbsDiff(
        g((v) => gelu(v as tf.Tensor2D)),
        g(plain),
      ),
    ).toBeLessThan(1e-4);
  });

  it('the low-rank term (x A) B gives the value and gradients of autodiff of plain MatMuls (1e-5)', () => {
    const x = tf.randomNormal([6, 8], 0, 1, 'float32', 11) as tf.Tensor2D;
    const a = tf.randomNormal([8, 3], 0, 1, 'float32', 12) as tf.Tensor2D;
    const b = tf.randomNormal([3, 5], 0, 1, 'float32', 13) as tf.Tensor2D;
    const dy = tf.randomNormal([6, 5], 0, 1, 'float32', 14);
    const loss = (f: (x: tf.Tensor2D, a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor) => (x: tf.Tensor, a: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.mul(f(x as tf.Tensor2D, a as tf.Tensor2D, b as tf.Tensor2D), dy));
    const plain = (x: tf.Tensor2D, a: tf.Tensor2D, b: tf.Tensor2D) => tf.matMul(tf.matMul(x, a), b);
    expect(maxAbsDiff(lowRank(x, a, b).dataSync(), plain(x, a, b).dataSync())).toBeLessThan(1e-5);
    const got = tf.grads(loss(lowRank))([x, a, b]);
    const want = tf.grads(loss(plain))([x, a, b]);
    got.forEach((g, i) => {
      expect(g.shape).toEqual(want[i]!.shape);
      expect(maxAbsDiff(g.dataSync(), want[i]!.dataSync())).toBeLessThan(1e-5);
    });
  });

  it('rows of a table give the gradient of a plain one-hot product, repeated ids summed', () => {
    const table = tf.randomNormal([7, 4], 0, 1, 'float32', 15) as tf.Tensor2D;
    const ids = tf.tensor2d(
      [
        [1, 3, 3],
        [0, 3, 6],
      ],
      [2, 3],
      'int32',
    );
    const dy = tf.randomNormal([2, 3, 4], 0, 1, 'float32', 16);
    const plain = (t: tf.Tensor2D) => tf.matMul(tf.oneHot(ids.reshape([-1]), 7), t).reshape([2, 3, 4]);
    expect(maxAbsDiff(gatherRows(table, ids).dataSync(), plain(table).dataSync())).toBe(0);
    const g = (f: (t: tf.Tensor2D) => tf.Tensor) =>
      tf
        .grad((t: tf.Tensor) => tf.sum(tf.mul(f(t as tf.Tensor2D), dy)))(table)
        .dataSync();
    expect(
      maxAbsDiff(
        g((t) => gatherRows(t, ids)),
        g(plain),
      ),
    ).toBeLessThan(1e-5);
  });
});
