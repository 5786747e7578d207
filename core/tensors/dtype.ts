/** Tensor element types of the safetensors format, and conversions of the 16-bit floats. */

export type DType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** The array that holds each dtype's elements. 16-bit floats are kept as raw bits; see toFloat32. */
export type TensorData = Float64Array | Float32Array | Uint16Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;

interface DTypeInfo {
  bytes: number;
  make: (buffer: ArrayBufferLike, byteOffset: number, length: number) => TensorData;
}

export const DTYPES: Record<DType, DTypeInfo> = {
  F64: { bytes: 8, make: (b, o, n) => new Float64Array(b, o, n) },
  F32: { bytes: 4, make: (b, o, n) => new Float32Array(b, o, n) },
  F16: { bytes: 2, make: (b, o, n) => new Uint16Array(b, o, n) },
  BF16: { bytes: 2, make: (b, o, n) => new Uint16Array(b, o, n) },
  I64: { bytes: 8, make: (b, o, n) => new BigInt64Array(b, o, n) },
  I32: { bytes: 4, make: (b, o, n) => new Int32Array(b, o, n) },
  I16: { bytes: 2, make: (b, o, n) => new Int16Array(b, o, n) },
  I8: { bytes: 1, make: (b, o, n) => new Int8Array(b, o, n) },
  U8: { bytes: 1, make: (b, o, n) => new Uint8Array(b, o, n) },
  BOOL: { bytes: 1, make: (b, o, n) => new Uint8Array(b, o, n) },
};

export function isDType(name: string): name is DType {
  return Object.hasOwn(DTYPES, name);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE half -> float. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** float -> IEEE half, round to nearest even. */
export function floatToHalf(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rest > mid || (rest === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && half & 1)) half++;
  if (half >= 0x7c00) e = 31;
  return sign | (e === 31 ? 0x7c00 : half);
}

/** bfloat16 -> float: the high half of a float32. */
export function bfloat16ToFloat(b: number): number {
  u32[0] = b << 16;
  return f32[0];
}

/** float -> bfloat16, round to nearest even. */
export function floatToBfloat16(value: number): number {
  f32[0] = value;
  const x = u32[0];
  if ((x & 0x7fffffff) > 0x7f800000) return (x >>> 16) | 0x40;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

// Whole arrays, element by element into a preallocated array: TypedArray.from(source, fn) first collects the values
// into a list, which a checkpoint's largest tensor (Llama-3.2-1B's token table: 263M values) does not fit.

function convert<T extends Uint16Array | Float32Array>(from: ArrayLike<number>, to: T, f: (x: number) => number): T {
  for (let i = 0; i < from.length; i++) to[i] = f(from[i]!);
  return to;
}

/** float32 values as bfloat16 bits, round to nearest even (NaN stays NaN). */
export const toBfloat16Array = (values: Float32Array): Uint16Array => convert(values, new Uint16Array(values.length), floatToBfloat16);

/** bfloat16 bits as float32 values. */
export const fromBfloat16Array = (bits: Uint16Array): Float32Array => convert(bits, new Float32Array(bits.length), bfloat16ToFloat);

/** float32 values as IEEE half bits, round to nearest even. */
export const toHalfArray = (values: Float32Array): Uint16Array => convert(values, new Uint16Array(values.length), floatToHalf);

/** IEEE half bits as float32 values. */
export const fromHalfArray = (bits: Uint16Array): Float32Array => convert(bits, new Float32Array(bits.length), halfToFloat);
