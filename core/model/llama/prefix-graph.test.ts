import * as ortNode from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { describe, expect, it } from 'vitest';
import { llamaConfig } from './config.ts';
import { initLlama } from './init.ts';
import { llamaReferenceHidden } from './reference.ts';
import { batch, INT8_TOLERANCE, leftPadded, maxAbsDiff, relativeError, TINY_LLAMA, type Batch } from '../../../tests/fixtures.ts';
import { lookupTokens, tokenTable } from '../../onnx/embedding.ts';
import { exportPrefix, exportPrefixExternal, PREFIX_OUTPUT, type PrefixOptions } from '../../onnx/prefix.ts';

ortWeb.env.wasm.numThreads = 1;
const RUNTIMES = [
  ['onnxruntime-node', ortNode],
  ['onnxruntime-web (wasm, 1 thread)', ortWeb],
] as const;

// Grouped-query attention (4 query heads on 2 key/value heads), llama3 rope scaling within the sequence's range.
const config = llamaConfig({
  ...TINY_LLAMA,
  ropeTheta: 10000,
  ropeScaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 16 },
});
const model = initLlama(config, { seed: 5, normNoise: 0.2 });
for (const [name, p] of model.params) if (/(q_proj|k_proj|embed_tokens)/.test(name)) p.forEach((v, i) => (p[i] = v * 10)); // sharp attention

const right = batch([7, 12, 1], 12, 'right', 7, config.vocabSize);
const BATCHES: Batch[] = [right, leftPadded(right), batch([16, 3, 9], 16, 'right', 12, config.vocabSize)];

async function run(ort: typeof ortNode | typeof ortWeb, options: PrefixOptions, b: Batch, external = false): Promise<Float32Array> {
  let session;
  if (external) {
    const { onnx, data, location } = exportPrefixExternal(model, options);
    expect(onnx.byteLength).toBeLessThan(64 * 1024); // the graph alone; the weights are in `data`
    session = await ort.InferenceSession.create(onnx, { externalData: [{ path: location, data }] });
  } else session = await ort.InferenceSession.create(exportPrefix(model, options));
  const ids = BigInt64Array.from(b.ids, BigInt);
  const feeds: Record<string, unknown> = { attention_mask: new ort.Tensor('int64', BigInt64Array.from(b.mask, BigInt), [b.B, b.T]) };
  if (options.tokenEmbedding === 'input')
    feeds.inputs_embeds = new ort.Tensor('float32', lookupTokens(tokenTable(model, options.weights ?? 'fp32'), ids), [b.B, b.T, config.nEmbd]);
  else feeds.input_ids = new ort.Tensor('int64', ids, [b.B, b.T]);
  const hidden = (await session.run(feeds as never))[PREFIX_OUTPUT]!;
  expect(hidden.dims).toEqual([b.B, b.T, config.nEmbd]);
  return hidden.data as Float32Array;
}

describe.each(RUNTIMES)('Llama device prefix on %s', (_, ort) => {
  it.each([0, 1, 3])('cut %i, fp32: equals the float64 reference (1e-5) for right-, left- and unpadded batches', async (cut) => {
    for (const b of BATCHES) {
      expect(maxAbsDiff(await run(ort, { cut }, b), llamaReferenceHidden(model, b.ids, b.mask, b.B, b.T, cut))).toBeLessThan(1e-5);
    }
  });

  it('with its weights as ONNX external data, gives exactly what the self-contained graph gives', async () => {
    const options: PrefixOptions = { cut: 3, weights: 'int8', tokenEmbedding: 'input' };
    expect(await run(ort, options, BATCHES[0]!, true)).toEqual(await run(ort, options, BATCHES[0]!));
  });

  it(`int8 weights with the token table outside the graph stay within ${INT8_TOLERANCE.native * 100}% of the reference (onnxruntime-node's tolerance)`, async () => {
    for (const b of BATCHES) {
      const err = relativeError(
        await run(ort, { cut: 3, weights: 'int8', tokenEmbedding: 'input' }, b),
        llamaReferenceHidden(model, b.ids, b.mask, b.B, b.T, 3),
      );
      expect(err).toBeLessThan(INT8_TOLERANCE.native);
      expect(err).toBeGreaterThan(0);
    }
  });
});

it('names the family and its range when a cut is out of range', () => {
  expect(() => exportPrefix(model, { cut: 4 })).toThrow('cut 4 is out of range: a llama model with 3 blocks has cuts 0..3');
});
