/**
 * Where a step's time goes, by kernel: tf.profile's per-kernel times summed over kernel name and input shapes, largest
 * first. Entries that are not kernels of the backend (a custom gradient's forward wraps the kernels it runs) are left
 * out so that nothing is counted twice.
 */
import * as tf from '@tensorflow/tfjs';

export interface KernelTime {
  kernel: string;
  inputShapes: string;
  calls: number;
  ms: number;
  share: number;
}

export async function kernelProfile(backend: string, step: () => Promise<unknown>, top = 15): Promise<KernelTime[]> {
  const name = tf.getBackend();
  const info = await tf.profile(async () => {
    await step();
    return [];
  });
  const byOp = new Map<string, KernelTime>();
  for (const k of info.kernels) {
    if (!tf.getKernel(k.name, name)) continue;
    const inputShapes = JSON.stringify(k.inputShapes);
    const key = `${k.name} ${inputShapes}`;
    const e = byOp.get(key) ?? { kernel: k.name, inputShapes, calls: 0, ms: 0, share: 0 };
    e.calls++;
    e.ms += Number(k.kernelTimeMs) || 0;
    byOp.set(key, e);
  }
  const total = [...byOp.values()].reduce((a, e) => a + e.ms, 0);
  if (total === 0) throw new Error(`the ${backend} backend reported no kernel times (${JSON.stringify(info.kernels[0]?.kernelTimeMs)})`);
  return [...byOp.values()]
    .sort((a, b) => b.ms - a.ms)
    .slice(0, top)
    .map((e) => ({ ...e, ms: Number(e.ms.toFixed(1)), share: Number((e.ms / total).toFixed(3)) }));
}
