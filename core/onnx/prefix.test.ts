import * as ortNode from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { referenceHidden } from '../model/gpt2/reference.ts';
import { batch, INT8_TOLERANCE, relativeError, leftPadded, maxAbsDiff, tinyModel, TINY, type Batch } from '../../tests/fixtures.ts';
import { initBackend } from '../../gpu-server/backends/tfjs/runtime.ts';
import { TfGPT2 } from '../../gpu-server/backends/tfjs/gpt2.ts';
import { exportPrefix, PREFIX_OUTPUT, type PrefixOptions } from './prefix.ts';
import { lookupTokens, readTokenRows, streamTokenRows, tokenTable, tokenTableFromTensors, tokenTableTensors } from './embedding.ts';
import { parseSafetensors, serializeSafetensors } from '../tensors/safetensors.ts';

type Ort = typeof ortNode | typeof ortWeb;
const RUNTIMES: Array<[string, Ort, number]> = [
  ['onnxruntime-node', ortNode, INT8_TOLERANCE.native],
  ['onnxruntime-web (wasm, 1 thread)', ortWeb, INT8_TOLERANCE.web],
];
ortWeb.env.wasm.numThreads = 1;

const model = tinyModel();
const rightBatch = batch([7, 10, 1], 10, 'right');
const BATCHES: Array<[string, Batch]> = [
  ['right-padded B=3', rightBatch],
  ['left-padded B=3', leftPadded(rightBatch)],
  ['unpadded B=1', batch([6], 6, 'right', 11)],
  ['right-padded B=5', batch([16, 3, 9, 16, 12], 16, 'right', 12)],
];
const CUTS = [0, 1, 2, TINY.nLayer];

async function runPrefix(ort: Ort, bytes: Uint8Array, b: Batch, options: Pick<PrefixOptions, 'tokenEmbedding' | 'weights'> = {}) {
  const session = await ort.InferenceSession.create(bytes);
  const ids = BigInt64Array.from(b.ids, BigInt);
  const feeds: Record<string, ortNode.Tensor> = { attention_mask: new ort.Tensor('int64', BigInt64Array.from(b.mask, BigInt), [b.B, b.T]) as ortNode.Tensor };
  if (options.tokenEmbedding === 'input') {
    // The device's own lookup, through a table that went through safetensors as it would on the wire.
    const table = tokenTableFromTensors(parseSafetensors(serializeSafetensors(tokenTableTensors(tokenTable(model, options.weights ?? 'fp32')))).tensors);
    feeds.inputs_embeds = new ort.Tensor('float32', lookupTokens(table, ids), [b.B, b.T, TINY.nEmbd]) as ortNode.Tensor;
  } else {
    feeds.input_ids = new ort.Tensor('int64', ids, [b.B, b.T]) as ortNode.Tensor;
  }
  const out = await session.run(feeds as never);
  const hidden = out[PREFIX_OUTPUT];
  expect(hidden.dims).toEqual([b.B, b.T, TINY.nEmbd]);
  return hidden.data as Float32Array;
}

describe('ONNX device prefix', () => {
  let tfModel: TfGPT2;
  beforeAll(async () => {
    await initBackend('wasm');
    tfModel = new TfGPT2(model);
  });
  const tfHidden = (b: Batch, cut: number) =>
    tf.tidy(() => tfModel.hidden(tf.tensor2d(b.ids, [b.B, b.T], 'int32'), tf.tensor2d(b.mask, [b.B, b.T], 'int32'), cut).dataSync());

  describe.each(RUNTIMES)('%s, fp32', (_, ort) => {
    it.each(CUTS)('cut %i equals the TF.js forward (1e-4) and the float64 reference (1e-5) for every batch', async (cut) => {
      const bytes = exportPrefix(model, { cut });
      for (const [, b] of BATCHES) {
        const got = await runPrefix(ort, bytes, b);
        expect(maxAbsDiff(got, tfHidden(b, cut))).toBeLessThan(1e-4);
        expect(maxAbsDiff(got, referenceHidden(model, b.ids, b.mask, b.B, b.T, cut))).toBeLessThan(1e-5);
      }
    });

    it('with the token table outside the graph, equals the reference', async () => {
      const bytes = exportPrefix(model, { cut: 2, tokenEmbedding: 'input' });
      const [, b] = BATCHES[1];
      expect(maxAbsDiff(await runPrefix(ort, bytes, b, { tokenEmbedding: 'input' }), referenceHidden(model, b.ids, b.mask, b.B, b.T, 2))).toBeLessThan(1e-5);
    });
  });

  describe.each(RUNTIMES)('%s, int8 weights', (_, ort, tolerance) => {
    it.each(CUTS)(
      `cut %i stays within the runtime's int8 tolerance (${INT8_TOLERANCE.web * 100}% on the web, ${INT8_TOLERANCE.native * 100}% native)`,
      async (cut) => {
        const bytes = exportPrefix(model, { cut, weights: 'int8' });
        for (const [, b] of BATCHES) {
          const want = referenceHidden(model, b.ids, b.mask, b.B, b.T, cut);
          const err = relativeError(await runPrefix(ort, bytes, b), want);
          expect(err).toBeLessThan(tolerance);
          expect(err).toBeGreaterThan(0); // the weights really are quantized
        }
      },
    );

    // The noise of a defence is the same for the same tokens 0..p, so copies of a row average to nothing new only if
    // the clean values are the same too: no other row, padding or length may move them (docs/SECURITY.md). Float
    // kernels at other shapes may round the last bits otherwise (fp32 segments too: up to ~1e-7 here); one scale over
    // the whole batch moved them by its quantization steps (1e-3 and more).
    it.each(CUTS)("cut %i: a row's positions are the same, up to float rounding, alone and in a padded batch of other rows", async (cut) => {
      const bytes = exportPrefix(model, { cut, weights: 'int8' });
      const [, b] = BATCHES[3];
      const inBatch = await runPrefix(ort, bytes, b);
      const d = TINY.nEmbd;
      for (const row of [1, 2]) {
        const length = b.lengths[row];
        const ids = b.ids.slice(row * b.T, row * b.T + length);
        const alone = await runPrefix(ort, bytes, { B: 1, T: length, ids, mask: new Int32Array(length).fill(1), lengths: [length] });
        expect(maxAbsDiff(inBatch.subarray(row * b.T * d, (row * b.T + length) * d), alone)).toBeLessThan(1e-6);
      }
    });

    it('with the int8 token table outside the graph, matches the in-graph int8 prefix', async () => {
      const [, b] = BATCHES[0];
      const inGraph = await runPrefix(ort, exportPrefix(model, { cut: 2, weights: 'int8' }), b);
      const outside = await runPrefix(ort, exportPrefix(model, { cut: 2, weights: 'int8', tokenEmbedding: 'input' }), b, {
        tokenEmbedding: 'input',
        weights: 'int8',
      });
      expect(maxAbsDiff(inGraph, outside)).toBeLessThan(1e-5);
    });
  });

  it('the int8 file is smaller than a third of the fp32 file for a model dominated by its linears', () => {
    const fp32 = exportPrefix(model, { cut: TINY.nLayer }).byteLength;
    const int8 = exportPrefix(model, { cut: TINY.nLayer, weights: 'int8' }).byteLength;
    expect(int8).toBeLessThan(fp32 / 2);
  });

  it('refuses a cut outside [0, n_layer] with the valid range', () => {
    expect(() => exportPrefix(model, { cut: TINY.nLayer + 1 })).toThrow(/cut 5 is out of range.*cuts 0\.\.4/);
    expect(() => exportPrefix(model, { cut: -1 })).toThrow(/out of range/);
  });

  it('a table of only the tokens in use, read by byte ranges, looks up the same rows as the whole table', async () => {
    for (const weights of ['fp32', 'int8'] as const) {
      const whole = tokenTable(model, weights);
      const ids = [5, 3, 5, 90, 0, 60];
      const file = serializeSafetensors(tokenTableTensors(whole));
      const reads: number[] = [];
      const offsets: number[] = [];
      const read = async (offset: number, length: number) => {
        reads.push(length);
        offsets.push(offset);
        return file.slice(offset, offset + length);
      };
      const ranged = await readTokenRows(read, file.length, ids, 'table', 8);
      expect(ranged.rows.length).toBe(5 * TINY.nEmbd);
      expect(lookupTokens(ranged, ids)).toEqual(lookupTokens(whole, ids));
      expect(() => lookupTokens(ranged, [5, 4])).toThrow(/input_ids\[1\] = 4 is not among the rows/);
      expect(() => lookupTokens(whole, [1, TINY.vocabSize])).toThrow(/input_ids\[1\] = 97 is outside the vocabulary/);
      // Header (2 reads), rows {0,3,5}, {60}, {90}, and the scales of an int8 table: far less than the file.
      expect(reads.length).toBe(weights === 'int8' ? 6 : 5);
      expect(reads.reduce((a, b) => a + b, 0)).toBeLessThan(file.length / 4);
      // Forward only, so the device can take the rows from one pass over the whole table (data-independent reads).
      expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
      await expect(readTokenRows(read, file.length, [TINY.vocabSize])).rejects.toThrow(/outside the vocabulary/);
    }
    // Also for a file that stores the scales before the rows.
    const whole = tokenTable(model, 'int8');
    const reversed = serializeSafetensors(Object.fromEntries(Object.entries(tokenTableTensors(whole)).reverse()));
    const offsets: number[] = [];
    const table = await readTokenRows(async (offset, length) => (offsets.push(offset), reversed.slice(offset, offset + length)), reversed.length, [7, 2]);
    expect(lookupTokens(table, [7, 2])).toEqual(lookupTokens(whole, [7, 2]));
    expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
  });

  it("takes a table's rows from one pass over the whole file, in chunks of any size, every byte seen", async () => {
    const whole = tokenTable(model, 'int8');
    const file = serializeSafetensors(tokenTableTensors(whole));
    const chunked = (bytes: Uint8Array, size: number) =>
      new ReadableStream<Uint8Array>({
        start(c) {
          for (let i = 0; i < bytes.length; i += size) c.enqueue(bytes.slice(i, i + size));
          c.close();
        },
      });
    for (const size of [1, 7, 4096, file.length]) {
      let seen = 0;
      const table = await streamTokenRows(chunked(file, size), file.length, [9, 3, 9, 60], 'table', (c) => (seen += c.length));
      expect(lookupTokens(table, [9, 3, 60])).toEqual(lookupTokens(whole, [9, 3, 60]));
      expect(seen).toBe(file.length);
    }
    await expect(streamTokenRows(chunked(file.slice(0, file.length - 500), 64), file.length, [90])).rejects.toThrow(/ended at byte \d+, \d+ expected/);
  });
});
