import { describe, expect, it } from 'vitest';
import { tokenTable, tokenTableTensors } from '../../../core/onnx/embedding.ts';
import { DT, GraphBuilder } from '../../../core/onnx/graph.ts';
import { exportPrefix } from '../../../core/onnx/prefix.ts';
import { parseSafetensorsHeader, serializeSafetensors } from '../../../core/tensors/safetensors.ts';
import type { Tensor } from '../../../core/tensors/tensor.ts';
import { tinyModel, TINY, wholeBatchQuantizedSegment } from '../../../tests/fixtures.ts';
import { checkTableHeader, inspectSegment, MAX_TABLE_VOCAB } from './segment-check.ts';

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

  it("refuses a segment that takes a token table but does not say its dtype (metadata 'weights')", () => {
    const g = new GraphBuilder();
    const y = g.op('Identity', ['inputs_embeds']);
    const graph = g.build({
      name: 'unsaid',
      inputs: [{ name: 'inputs_embeds', type: DT.FLOAT, dims: ['batch', 'sequence', d] }],
      outputs: [{ name: 'hidden_states', type: DT.FLOAT, dims: ['batch', 'sequence', d], from: y }],
      opset: 20,
      metadata: {},
    });
    expect(inspectSegment(graph)).toEqual({
      refusal: "model segment: its metadata does not say its 'weights' (int8 or fp32), which fixes its token table's dtype",
    });
  });

  it('refuses bytes that are not an ONNX model', () => {
    expect(inspectSegment(new Uint8Array([0xff, 0xff, 0xff, 0xff]))).toMatchObject({ refusal: expect.stringMatching(/^model segment: not an ONNX model/) });
  });
});

describe("a token table's header, checked against its segment before any row is read", () => {
  const shape = { nEmbd: d, dtype: 'I8' as const };
  const check = (bytes: Uint8Array) => checkTableHeader(parseSafetensorsHeader(bytes, bytes.byteLength), bytes.byteLength, shape);
  /** A table as tokenTableTensors writes it, of any shape, with `also` beside it. */
  const table = (vocab: number, width: number, dtype: 'I8' | 'F32' = 'I8', also: Record<string, Tensor> = {}) =>
    serializeSafetensors({
      ...(dtype === 'I8'
        ? {
            'wte.weight_int8': { dtype, shape: [vocab, width], data: new Int8Array(vocab * width) },
            'wte.weight_scale': { dtype: 'F32', shape: [vocab], data: new Float32Array(vocab) },
          }
        : { 'wte.weight': { dtype, shape: [vocab, width], data: new Float32Array(vocab * width) } }),
      ...also,
    });

  it("passes the segment's own table, and gives its vocabulary", () => {
    expect(check(serializeSafetensors(tokenTableTensors(tokenTable(model, 'int8'))))).toMatchObject({ vocab: TINY.vocabSize });
    expect(check(table(10, d))).toMatchObject({ vocab: 10 });
  });

  it('refuses another width, another dtype, a vocabulary past any in use, and bytes past its tensors', () => {
    expect(check(table(10, d * 2))).toEqual({ problem: `rows of width ${d * 2}, the segment's are ${d}` });
    expect(check(table(10, d, 'F32'))).toEqual({ problem: 'a F32 table, the segment takes I8' });
    const vocab = MAX_TABLE_VOCAB + 1;
    const huge = checkTableHeader(
      {
        entries: [
          { name: 'wte.weight_int8', dtype: 'I8', shape: [vocab, d], begin: 0, end: vocab * d },
          { name: 'wte.weight_scale', dtype: 'F32', shape: [vocab], begin: vocab * d, end: vocab * (d + 4) },
        ],
        metadata: {},
        dataStart: 64,
      },
      64 + vocab * (d + 4),
      shape,
    );
    expect(huge).toEqual({ problem: `${vocab} tokens, more than ${MAX_TABLE_VOCAB}` });
    const own = table(10, d);
    const longer = new Uint8Array(own.byteLength + 5);
    longer.set(own);
    expect(checkTableHeader(parseSafetensorsHeader(longer, longer.byteLength), longer.byteLength, shape)).toEqual({
      problem: `its tensors end at byte ${own.byteLength}, the file at ${longer.byteLength}`,
    });
  });

  it('refuses a second table beside the first (which the rows reader might prefer), or any other tensor', () => {
    const wide = { 'wte.weight': { dtype: 'F32', shape: [4, 1 << 16], data: new Float32Array(4 << 16) } } as Record<string, Tensor>;
    const layout = "a table is 'wte.weight' [vocab, d], or 'wte.weight_int8' [vocab, d] with 'wte.weight_scale' [vocab]";
    expect(check(table(10, d, 'I8', wide))).toEqual({ problem: `tensors wte.weight, wte.weight_int8, wte.weight_scale: ${layout}` });
    const filler = { filler: { dtype: 'U8', shape: [8], data: new Uint8Array(8) } } as Record<string, Tensor>;
    expect(check(table(10, d, 'I8', filler))).toEqual({ problem: `tensors filler, wte.weight_int8, wte.weight_scale: ${layout}` });
    expect(check(serializeSafetensors({ other: { dtype: 'F32', shape: [2], data: new Float32Array(2) } }))).toEqual({ problem: `tensors other: ${layout}` });
  });
});
