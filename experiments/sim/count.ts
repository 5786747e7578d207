/** Counts the FLOPs of the matrix multiplications TensorFlow.js actually runs, from its kernel profile. */
import * as tf from '@tensorflow/tfjs';

const MATMULS = new Set(['BatchMatMul', 'MatMul', '_FusedMatMul']);

export async function countMatmulFlops(fn: () => unknown): Promise<number> {
  const profile = await tf.profile(async () => {
    await fn();
    return [];
  });
  let flops = 0;
  for (const k of profile.kernels) {
    if (!MATMULS.has(k.name)) continue;
    const out = k.outputShapes[0] as number[];
    const a = k.inputShapes[0] as number[];
    const m = out[out.length - 2];
    const contracted = (a[a.length - 1] * a[a.length - 2]) / m;
    flops += 2 * out.reduce((x, y) => x * y, 1) * contracted;
  }
  return flops;
}
