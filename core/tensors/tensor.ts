import { DTYPES, fromBfloat16Array, fromHalfArray, toBfloat16Array, toHalfArray, type DType, type TensorData } from './dtype.ts';

/** A host tensor: row-major data plus its dtype and shape. */
export interface Tensor {
  dtype: DType;
  shape: number[];
  data: TensorData;
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function f32(shape: number[], data: Float32Array = new Float32Array(numel(shape))): Tensor {
  return { dtype: 'F32', shape, data };
}

/** Any floating tensor as float32 values (16-bit floats decoded). */
export function toFloat32(t: Tensor): Float32Array {
  switch (t.dtype) {
    case 'F32':
      return t.data as Float32Array;
    case 'F64':
      return Float32Array.from(t.data as Float64Array);
    case 'F16':
      return fromHalfArray(t.data as Uint16Array);
    case 'BF16':
      return fromBfloat16Array(t.data as Uint16Array);
    default:
      throw new Error(`tensor of dtype ${t.dtype} is not floating point`);
  }
}

/** Float values stored in the given floating dtype. */
export function fromFloat32(values: Float32Array, shape: number[], dtype: 'F32' | 'F16' | 'BF16' | 'F64'): Tensor {
  switch (dtype) {
    case 'F32':
      return { dtype, shape, data: values };
    case 'F64':
      return { dtype, shape, data: Float64Array.from(values) };
    case 'F16':
      return { dtype, shape, data: toHalfArray(values) };
    case 'BF16':
      return { dtype, shape, data: toBfloat16Array(values) };
  }
}

export function byteLength(t: Tensor): number {
  return numel(t.shape) * DTYPES[t.dtype].bytes;
}
