import { describe, expect, it } from 'vitest';
import { floatToBfloat16, floatToHalf, halfToFloat, bfloat16ToFloat } from './dtype.ts';
import { parseSafetensors, serializeSafetensors } from './safetensors.ts';
import { fromFloat32, toFloat32, type Tensor } from './tensor.ts';

const sample: Record<string, Tensor> = {
  f32: { dtype: 'F32', shape: [2, 3], data: Float32Array.from([1, -2, 3.5, 0, 1e-8, -7]) },
  f16: fromFloat32(Float32Array.from([1, -2, 0.5, 65504]), [4], 'F16'),
  bf16: fromFloat32(Float32Array.from([1, -2, 3.140625]), [3], 'BF16'),
  i8: { dtype: 'I8', shape: [3], data: Int8Array.from([-128, 0, 127]) },
  u8: { dtype: 'U8', shape: [1, 2], data: Uint8Array.from([0, 255]) },
  i32: { dtype: 'I32', shape: [2], data: Int32Array.from([-5, 2 ** 31 - 1]) },
  i64: { dtype: 'I64', shape: [2], data: BigInt64Array.from([-1n, 2n ** 40n]) },
  empty: { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
};

/** A hand-made file: header JSON and data bytes, so malformed files can be written on purpose. */
function handMade(header: unknown, data: Uint8Array = new Uint8Array(0), headerLength?: number): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength ?? json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

describe('safetensors', () => {
  it('round-trips every supported dtype, the metadata, and the order', () => {
    const bytes = serializeSafetensors(sample, { format: 'pt' });
    expect(Number(new DataView(bytes.buffer).getBigUint64(0, true)) % 8).toBe(0);
    const { tensors, metadata } = parseSafetensors(bytes);
    expect(metadata).toEqual({ format: 'pt' });
    expect([...tensors.keys()]).toEqual(Object.keys(sample));
    for (const [name, t] of Object.entries(sample)) {
      const got = tensors.get(name)!;
      expect([got.dtype, got.shape], name).toEqual([t.dtype, t.shape]);
      expect(Array.from(got.data as ArrayLike<number>), name).toEqual(Array.from(t.data as ArrayLike<number>));
    }
    expect(Array.from(toFloat32(tensors.get('f16')!))).toEqual([1, -2, 0.5, 65504]);
    expect(Array.from(toFloat32(tensors.get('bf16')!))).toEqual([1, -2, 3.140625]);
  });

  it('reads a minimal file laid out by hand from the format description', () => {
    const header = '{"a":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}}';
    const bytes = handMade(JSON.parse(header), new Uint8Array(Float32Array.from([1, 2]).buffer));
    expect(Array.from(toFloat32(parseSafetensors(bytes).tensors.get('a')!))).toEqual([1, 2]);
  });

  it('converts half and bfloat16 with round-to-nearest-even', () => {
    for (const v of [0, -0, 1, -1.5, 0.1, 65504, 6.1e-5, 5.96e-8, 1e-9, Infinity]) {
      expect(halfToFloat(floatToHalf(v))).toBeCloseTo(Math.fround(v), Math.abs(v) < 1e-4 ? 7 : 2);
    }
    expect(floatToHalf(1e6)).toBe(0x7c00); // overflow -> inf
    expect(floatToHalf(1 + 2 ** -11)).toBe(0x3c00); // a tie rounds to even
    expect(bfloat16ToFloat(floatToBfloat16(3.14159))).toBe(3.140625);
    expect(Number.isNaN(bfloat16ToFloat(floatToBfloat16(NaN)))).toBe(true);
  });

  it('names the file and the problem for a truncated file', () => {
    const bytes = serializeSafetensors(sample);
    expect(() => parseSafetensors(bytes.subarray(0, 5), 'm.safetensors')).toThrow(/^m\.safetensors: truncated: 5 bytes/);
    expect(() => parseSafetensors(bytes.subarray(0, 40), 'm.safetensors')).toThrow(/m\.safetensors: truncated: header of \d+ bytes/);
    expect(() => parseSafetensors(bytes.subarray(0, bytes.length - 1), 'm.safetensors')).toThrow(/m\.safetensors: tensor 'i64': truncated: data ends at byte/);
  });

  it('names the file and tensor for a corrupt header', () => {
    const f = 'x.safetensors';
    expect(() => parseSafetensors(handMade({}, undefined, 2 ** 40), f)).toThrow(/x\.safetensors: corrupt header: header length/);
    const bad = handMade({});
    bad[8] = 0x7b; // '{' then garbage
    bad[9] = 0x2c;
    expect(() => parseSafetensors(bad, f)).toThrow(/x\.safetensors: corrupt header: not valid UTF-8 JSON/);
    expect(() => parseSafetensors(handMade([1]), f)).toThrow(/not a JSON object/);
    expect(() => parseSafetensors(handMade({ w: { dtype: 'F8', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1)), f)).toThrow(
      /x\.safetensors: tensor 'w': unsupported or missing dtype "F8"/,
    );
    expect(() => parseSafetensors(handMade({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4)), f)).toThrow(
      /tensor 'w'.*shape \[-1\]/,
    );
    expect(() => parseSafetensors(handMade({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, new Uint8Array(4)), f)).toThrow(
      /tensor 'w': data_offsets span 4 bytes but F32\[2\] needs 8/,
    );
    expect(() => parseSafetensors(handMade({ w: { dtype: 'F32', shape: [1], data_offsets: [4] } }, new Uint8Array(4)), f)).toThrow(
      /tensor 'w': corrupt header: data_offsets/,
    );
    const overlap = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } };
    expect(() => parseSafetensors(handMade(overlap, new Uint8Array(8)), f)).toThrow(/tensor 'b': corrupt header: data overlaps tensor 'a'/);
    expect(() => parseSafetensors(handMade({ __metadata__: { a: 1 } }), f)).toThrow(/__metadata__/);
  });

  it('refuses to write a tensor whose data does not match its shape', () => {
    expect(() => serializeSafetensors({ w: { dtype: 'F32', shape: [3], data: new Float32Array(2) } })).toThrow(
      /tensor 'w': holds 8 bytes but F32\[3\] needs 12/,
    );
  });
});
