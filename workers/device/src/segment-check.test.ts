import { describe, expect, it } from 'vitest';
import { tokenTable, tokenTableTensors } from '../../../core/onnx/embedding.ts';
import { exportPrefix } from '../../../core/onnx/prefix.ts';
import { parseSafetensorsHeader, serializeSafetensors } from '../../../core/tensors/safetensors.ts';
import { tinyModel, TINY, wholeBatchQuantizedSegment } from '../../../tests/fixtures.ts';
import { inspectSegment, MAX_TABLE_VOCAB, tableHeaderProblem } from './segment-check.ts';

const model = tinyModel();
const d = TINY.nEmbd;

describe("a segment's graph, inspected before it runs", () => {
  it('gives the width and dtype of the token table a segment takes, and none for one that takes token ids', () => {
    expect(inspectSegment(exportPrefix(model, { cut: 2, weights: 'int8', tokenEmbedding: 'input' }))).toEqual({ table: { nEmbd: d, dtype: 'I8' } });
    expect(inspectSegment(exportPrefix(model, { cut: 2, tokenEmbedding: 'input' }))).toEqual({ table: { nEmbd: d, dtype: 'F32' } });
    expect(inspectSegment(exportPrefix(model, { cut: 2, weights: 'int8' }))).toEqual({ table: undefined });
  });

  it('refuses a segment that quantizes activations over the whole batch, saying what its owner does', () => {
    expect(inspectSegment(wholeBatchQuantizedSegment(d))).toEqual({
      refusal:
        "model segment: it quantizes activations with one scale over the whole batch (DynamicQuantizeMatMul), so a row's values would depend on the rest of the batch under its noise; its owner approves a segment exported again (export-prefix quantizes each position on its own) and deletes this approval",
    });
  });

  it('refuses bytes that are not an ONNX model', () => {
    expect(inspectSegment(new Uint8Array([0xff, 0xff, 0xff, 0xff]))).toMatchObject({ refusal: expect.stringMatching(/^model segment: not an ONNX model/) });
  });
});

describe("a token table's header, checked against its segment before any row is read", () => {
  const shape = { nEmbd: d, dtype: 'I8' as const };
  const check = (bytes: Uint8Array) => tableHeaderProblem(parseSafetensorsHeader(bytes, bytes.byteLength), bytes.byteLength, shape);
  const table = (vocab: number, width: number, dtype: 'I8' | 'F32' = 'I8') =>
    serializeSafetensors({
      [dtype === 'I8' ? 'wte.weight_int8' : 'wte.weight']: {
        dtype,
        shape: [vocab, width],
        data: dtype === 'I8' ? new Int8Array(vocab * width) : new Float32Array(vocab * width),
      },
    });

  it("passes the segment's own table", () => {
    expect(check(serializeSafetensors(tokenTableTensors(tokenTable(model, 'int8'))))).toBeUndefined();
  });

  it('refuses another width, another dtype, a vocabulary past any in use, and bytes past its tensors', () => {
    expect(check(table(10, d * 2))).toBe(`rows of width ${d * 2}, the segment's are ${d}`);
    expect(check(table(10, d, 'F32'))).toBe('a F32 table, the segment takes I8');
    const huge = tableHeaderProblem(
      {
        entries: [{ name: 'wte.weight_int8', dtype: 'I8', shape: [MAX_TABLE_VOCAB + 1, d], begin: 0, end: (MAX_TABLE_VOCAB + 1) * d }],
        metadata: {},
        dataStart: 64,
      },
      64 + (MAX_TABLE_VOCAB + 1) * d,
      shape,
    );
    expect(huge).toBe(`${MAX_TABLE_VOCAB + 1} tokens, more than ${MAX_TABLE_VOCAB}`);
    const own = table(10, d);
    const longer = new Uint8Array(own.byteLength + 5);
    longer.set(own);
    expect(tableHeaderProblem(parseSafetensorsHeader(longer, longer.byteLength), longer.byteLength, shape)).toBe(
      `its tensors end at byte ${own.byteLength}, the file at ${longer.byteLength}`,
    );
    expect(check(serializeSafetensors({ other: { dtype: 'F32', shape: [2], data: new Float32Array(2) } }))).toBe(
      "no table 'wte.weight' or 'wte.weight_int8' of shape [vocab, d]",
    );
  });
});
