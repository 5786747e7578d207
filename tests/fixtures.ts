/** Shared test data: a tiny GPT-2 and a tiny Llama whose every parameter matters, and padded batches of random tokens. */
import { gpt2Config, type GPT2Config } from '../core/model/gpt2/config.ts';
import { initModel } from '../core/model/gpt2/init.ts';
import type { GPT2Model } from '../core/model/gpt2/weights.ts';
import { llamaConfig, type LlamaConfig } from '../core/model/llama/config.ts';
import { initLlama } from '../core/model/llama/init.ts';
import type { LlamaModel } from '../core/model/llama/weights.ts';
import { Random } from '../core/random.ts';
import { DT, GraphBuilder } from '../core/onnx/graph.ts';
import { PREFIX_OPSET, PREFIX_OUTPUT } from '../core/onnx/prefix.ts';

export const TINY: GPT2Config = gpt2Config({ nLayer: 4, nEmbd: 32, nHead: 4, nInner: 64, nPositions: 32, vocabSize: 97, numLabels: 3, padTokenId: 0 });

/** A tiny Llama: 3 blocks of width 32, grouped-query attention (4 query heads on 2 key/value heads), 97 tokens. */
export const TINY_LLAMA: LlamaConfig = llamaConfig({
  nLayer: 3,
  nEmbd: 32,
  nHead: 4,
  nKvHead: 2,
  headDim: 8,
  nInner: 48,
  vocabSize: 97,
  nPositions: 64,
  bosTokenId: 1,
  eosTokenIds: [2],
  padTokenId: 0,
});

/** TINY_LLAMA's random weights, with norms away from 1 so that every parameter matters. */
export function tinyLlama(seed = 2, config: LlamaConfig = TINY_LLAMA): LlamaModel {
  return initLlama(config, { seed, normNoise: 0.1 });
}

export function tinyModel(seed = 1, config: GPT2Config = TINY): GPT2Model {
  // Larger-than-default weights so that attention patterns and layer norms are far from trivial.
  const model = initModel(config, { seed, paramNoise: 0.2 });
  for (const [name, p] of model.params) if (/(c_attn|c_fc)\.weight$|^w[tp]e/.test(name)) p.forEach((v, i) => (p[i] = v * 10));
  return model;
}

export interface Batch {
  B: number;
  T: number;
  ids: Int32Array;
  mask: Int32Array;
  lengths: number[];
}

/** Random token rows of the given lengths, padded to T on the right or the left with `pad`. */
export function batch(lengths: number[], T: number, side: 'right' | 'left', seed = 7, vocab = TINY.vocabSize, pad = 0): Batch {
  const rng = new Random(seed);
  const B = lengths.length;
  const ids = new Int32Array(B * T).fill(pad);
  const mask = new Int32Array(B * T);
  lengths.forEach((n, b) => {
    const start = side === 'right' ? 0 : T - n;
    for (let t = start; t < start + n; t++) {
      ids[b * T + t] = 1 + Math.floor(rng.uniform() * (vocab - 1));
      mask[b * T + t] = 1;
    }
  });
  return { B, T, ids, mask, lengths };
}

/** The same rows as `right`, re-padded on the left. */
export function leftPadded(right: Batch, pad = 0): Batch {
  const { B, T, lengths } = right;
  const ids = new Int32Array(B * T).fill(pad);
  const mask = new Int32Array(B * T);
  lengths.forEach((n, b) => {
    ids.set(right.ids.subarray(b * T, b * T + n), b * T + T - n);
    mask.fill(1, b * T + T - n, b * T + T);
  });
  return { B, T, ids, mask, lengths };
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** A prefix's output [B, T, d] as a device uploads it: padding positions zeroed (core/privacy/defend.ts). */
export function paddingZeroed(x: Float32Array, mask: ArrayLike<number>, d: number): Float32Array {
  const out = Float32Array.from(x);
  for (let p = 0; p < mask.length; p++) if (!mask[p]) out.fill(0, p * d, (p + 1) * d);
  return out;
}

/** Values of [B, T, d] at the real (mask = 1) positions only, in order. */
export function realRows(x: ArrayLike<number>, mask: ArrayLike<number>, d: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < mask.length; r++) if (mask[r]) for (let i = 0; i < d; i++) out.push(x[r * d + i]);
  return out;
}

/**
 * The int8 prefix's stated tolerance: relative error of the hidden states at the cut against the float64 reference.
 * onnxruntime-web (what devices run) stays within 1% (seen: 0.3%). onnxruntime-node's x86 kernels on a CPU without
 * VNNI (AVX2 only) add up pairs of u8 x s8 products in 16 bits, which saturate: seen 2.1% at cut 4 of the tiny GPT-2
 * on such a machine, so native runs are held to 3%.
 */
export const INT8_TOLERANCE = { web: 0.01, native: 0.03 } as const;

/** ||a - b|| / ||b||: an error relative to the reference's size. */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

/**
 * A prefix of width `d` as segments were exported before 2026-12-07: one linear that quantizes the whole batch's
 * activations with one scale (DynamicQuantizeMatMul), which devices now refuse to run.
 */
export function wholeBatchQuantizedSegment(d: number): Uint8Array {
  const g = new GraphBuilder();
  const w = g.initializer('w', DT.INT8, [d, d], new Int8Array(d * d).fill(1));
  const scale = g.initializer('w_scale', DT.FLOAT, [d], new Float32Array(d).fill(0.01));
  const y = g.op('DynamicQuantizeMatMul', ['inputs_embeds', w, scale], {}, 'com.microsoft');
  return g.build({
    name: 'whole-batch-prefix',
    inputs: [
      { name: 'inputs_embeds', type: DT.FLOAT, dims: ['batch', 'sequence', d] },
      { name: 'attention_mask', type: DT.INT64, dims: ['batch', 'sequence'] },
    ],
    outputs: [{ name: PREFIX_OUTPUT, type: DT.FLOAT, dims: ['batch', 'sequence', d], from: y }],
    opset: PREFIX_OPSET,
    metadata: { weights: 'int8' },
  });
}
