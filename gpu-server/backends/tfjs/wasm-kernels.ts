/**
 * Two kernels of the WASM backend replaced by better ones (tf.registerKernel), checked against the cpu backend in
 * wasm-kernels.test.ts.
 *
 * Identity shares its input's data, as the cpu backend's does, instead of copying it: autodiff clones every tensor it
 * saves for the backward pass, so the copying kernel held the whole tape twice (a GPT-2-small block's tape is some
 * hundreds of MB) and spent time on the copies.
 *
 * BatchMatMul: tfjs-backend-wasm sends a MatMul to XNNPACK (SIMD, threaded, ~80 GFLOP/s on two cores) only when it
 * is a single non-transposed 2-D product; a batched one ([B, H, T, T] x [B, H, T, hd] in attention) goes to a scalar
 * loop at ~3 GFLOP/s, which made attention half of a GPT-2 training step. This kernel transposes the operands where
 * asked and runs the batch as that many 2-D products on XNNPACK, addressing each matrix in place: the wasm side names
 * tensors by id and pointer, so a matrix inside a batch is registered under a temporary id for the duration of its
 * product. Broadcast batches, empty operands and plain 2-D products go to the original kernel.
 *
 * Both reach into tfjs-backend-wasm's internals (pinned at 4.22.0), which is why each has its test.
 */
import * as tf from '@tensorflow/tfjs';

interface TensorInfo {
  dataId: object;
  shape: number[];
  dtype: string;
}

interface WasmBackend {
  dataIdNextNumber: number;
  incRef(dataId: object): void;
  getMemoryOffset(dataId: object): number;
  makeOutput(shape: number[], dtype: string): TensorInfo;
  disposeData(dataId: object): boolean;
  wasm: {
    cwrap(name: string, ret: null, args: string[]): (...args: unknown[]) => void;
    tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void };
  };
}

type KernelArgs = { inputs: { a: TensorInfo; b: TensorInfo }; backend: WasmBackend; attrs: { transposeA: boolean; transposeB: boolean } };

let installed = false;

/** Replaces the wasm backend's Identity and BatchMatMul (once per process; call after the backend has initialised). */
export function installWasmKernels(): void {
  if (installed) return;
  installed = true;
  replaceKernel('Identity', (({ inputs: { x }, backend }: { inputs: { x: TensorInfo }; backend: WasmBackend }): TensorInfo => {
    backend.incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  }) as unknown as tf.KernelFunc);
  replaceKernel('BatchMatMul', batchMatMulOnXnnpack() as unknown as tf.KernelFunc);
}

function replaceKernel(kernelName: string, kernelFunc: tf.KernelFunc): void {
  tf.unregisterKernel(kernelName, 'wasm');
  tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc });
}

function batchMatMulOnXnnpack() {
  const original = tf.getKernel('BatchMatMul', 'wasm')!;
  const transpose = tf.getKernel('Transpose', 'wasm')!.kernelFunc;
  let matMul2d: ((...args: unknown[]) => void) | undefined;

  return function batchMatMulOnXnnpack(args: KernelArgs): TensorInfo {
    const { inputs, backend, attrs } = args;
    const { a, b } = inputs;
    const batchA = a.shape.slice(0, -2);
    const batchB = b.shape.slice(0, -2);
    const batch = batchA.reduce((x, y) => x * y, 1);
    const sameBatch = batchA.length === batchB.length && batchA.every((d, i) => d === b.shape[i]);
    const empty = [...a.shape, ...b.shape].includes(0);
    if (batch <= 1 || !sameBatch || empty || a.dtype !== 'float32' || b.dtype !== 'float32') {
      return original.kernelFunc(args as unknown as Parameters<tf.KernelFunc>[0]) as TensorInfo;
    }
    matMul2d ??= backend.wasm.cwrap('BatchMatMul', null, ['number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number']);
    // Operands in [.., rows, inner] x [.., inner, cols] layout, transposed here where the op asked for it.
    const plain = (x: TensorInfo, transposed: boolean): TensorInfo => {
      if (!transposed) return x;
      const perm = x.shape.map((_, i) => i);
      [perm[perm.length - 2], perm[perm.length - 1]] = [perm[perm.length - 1], perm[perm.length - 2]];
      return transpose({ inputs: { x }, backend, attrs: { perm } } as unknown as Parameters<tf.KernelFunc>[0]) as TensorInfo;
    };
    const pa = plain(a, attrs.transposeA);
    const pb = plain(b, attrs.transposeB);
    const [m, k] = pa.shape.slice(-2);
    const n = pb.shape.at(-1)!;
    if (pb.shape.at(-2) !== k)
      throw new Error(`Error in matMul: inner shapes (${k}) and (${pb.shape.at(-2)}) of tensors with shapes ${a.shape} and ${b.shape} must match`);
    const out = backend.makeOutput([...batchA, m, n], 'float32');
    const base = [pa, pb, out].map((t) => backend.getMemoryOffset(t.dataId));
    const sizes = [m * k, k * n, m * n];
    const shapeBytes = (rows: number, cols: number) => new Uint8Array(new Int32Array([1, rows, cols]).buffer);
    const aShape = shapeBytes(m, k);
    const bShape = shapeBytes(k, n);
    for (let g = 0; g < batch; g++) {
      const ids = sizes.map((size, i) => {
        const id = backend.dataIdNextNumber++;
        backend.wasm.tfjs.registerTensor(id, size, base[i]! + g * size * 4);
        return id;
      });
      matMul2d(ids[0], aShape, 3, ids[1], bShape, 3, false, false, ids[2]);
      // Disposing the id also drops the XNNPACK operator cached on this matrix (it packs its "weights").
      for (const id of ids) backend.wasm.tfjs.disposeData(id);
    }
    if (pa !== a) backend.disposeData(pa.dataId);
    if (pb !== b) backend.disposeData(pb.dataId);
    return out;
  };
}
