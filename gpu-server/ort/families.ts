/**
 * What OrtBlocks needs of a family: its block graphs, a block's weights as graph inputs, the tape's names and shapes,
 * and what every block of a batch shares (the attention mask; Llama's rotary cos and sin). The one place that picks
 * the family's graphs.
 */
import * as ort from 'onnxruntime-node';
import { linearInOut, type Model } from '../../core/model/family.ts';
import { ropeInvFreq } from '../../core/model/llama/reference.ts';
import { MASKED_SCORE, positionIds } from '../../core/model/masking.ts';
import { requireParam } from '../../core/model/params.ts';
import { BLOCK_LINEARS, linearShape, type BlockLinear } from '../../core/model/weights.ts';
import { llamaLinearShape, LM_HEAD, type LlamaLinear } from '../../core/model/llama/weights.ts';
import { GPT2_BLOCK_WEIGHTS, gpt2BackwardGraph, gpt2ForwardGraph, gpt2SavedNames, gpt2SavedShapes } from './gpt2-graphs.ts';
import type { LoraGraphSpec } from './lora-graph.ts';
import { LLAMA_BLOCK_WEIGHTS, llamaBackwardGraph, llamaForwardGraph, llamaLmHeadGraph, llamaSavedNames, llamaSavedShapes } from './llama-graphs.ts';

export interface BlockFamily {
  nEmbd: number;
  forwardGraph(): Uint8Array;
  backwardGraph(needDx: boolean): Uint8Array;
  /** Block i's frozen weights, as the graphs take them. */
  weights(i: number): Record<string, ort.Tensor>;
  /** What the forward saves for the backward, and its shapes for a batch of B x T. */
  saved: string[];
  savedShapes(B: number, T: number): Record<string, number[]>;
  /** Inputs every block of a batch shares, from its attention mask [B, T]. */
  shared(mask: Int32Array, B: number, T: number): Record<string, ort.Tensor>;
  /** An adapted linear's [in, out]. */
  linearInOut(linear: string): [number, number];
  /** The final norm, LM head and causal-LM loss as one graph, and its weights (Llama's; GPT-2 trains classifiers). */
  lmHead?: { graph(): Uint8Array; weights: Record<string, ort.Tensor> };
}

const f32 = (data: Float32Array, dims: number[]): ort.Tensor => new ort.Tensor('float32', data, dims);

export function blockFamily(model: Model, lora: LoraGraphSpec): BlockFamily {
  const c = model.config;
  const param = (name: string) => requireParam(model.params, name);
  const common = { nEmbd: c.nEmbd, linearInOut: (linear: string) => linearInOut(c, linear) };
  if (c.modelType === 'llama') {
    // Once per run, not per batch.
    const invFreq = Float32Array.from(ropeInvFreq(c));
    return {
      ...common,
      forwardGraph: () => llamaForwardGraph(c, lora),
      backwardGraph: (needDx) => llamaBackwardGraph(c, lora, needDx),
      weights: (i) => Object.fromEntries(LLAMA_BLOCK_WEIGHTS.map((name) => [name, f32(param(`layers.${i}.${name}`), name.endsWith('layernorm.weight') ? [c.nEmbd] : llamaLinearShape(c, name.replace(/\.weight$/, '') as LlamaLinear))])),
      saved: llamaSavedNames(c, lora),
      savedShapes: (B, T) => llamaSavedShapes(c, lora, B, T),
      lmHead: {
        graph: () => llamaLmHeadGraph(c),
        // The token table when tied; onnxruntime reads the checkpoint's own buffer, no copy.
        weights: { 'norm.weight': f32(param('norm.weight'), [c.nEmbd]), head: f32(param(c.tieWordEmbeddings ? 'embed_tokens.weight' : LM_HEAD), [c.vocabSize, c.nEmbd]) },
      },
      shared: (mask, B, T) => {
        const m = attentionArrays(mask, B, T, c.headDim);
        return { scale: f32(m.scale, [B, 1, 1, T, T]), fill: f32(m.fill, [B, 1, 1, T, T]), ...rotary(invFreq, mask, B, T) };
      },
    };
  }
  return {
    ...common,
    forwardGraph: () => gpt2ForwardGraph(c, lora),
    backwardGraph: (needDx) => gpt2BackwardGraph(c, lora, needDx),
    weights: (i) =>
      Object.fromEntries(
        GPT2_BLOCK_WEIGHTS.map((name) => {
          const linear = name.replace(/\.weight$/, '') as BlockLinear;
          const data = param(`h.${i}.${name}`);
          return [name, f32(data, BLOCK_LINEARS.includes(linear) ? linearShape(c, linear) : [data.length])];
        }),
      ),
    saved: gpt2SavedNames(c, lora),
    savedShapes: (B, T) => gpt2SavedShapes(c, lora, B, T),
    shared: (mask, B, T) => {
      const m = attentionArrays(mask, B, T, c.nEmbd / c.nHead);
      return { scale: f32(m.scale, [B, 1, T, T]), fill: f32(m.fill, [B, 1, T, T]) };
    },
  };
}

/**
 * The attention mask as the block graphs apply it, scores * scale + fill: scale 1/sqrt(head_dim) where query i may
 * see key j (j <= i, and j a real token) and 0 elsewhere, fill 0 or MASKED_SCORE (gpu-server/model/ops.attentionMask).
 */
export function attentionArrays(mask: Int32Array, B: number, T: number, headDim: number): { scale: Float32Array; fill: Float32Array } {
  const scale = new Float32Array(B * T * T);
  const fill = new Float32Array(B * T * T).fill(MASKED_SCORE);
  for (let b = 0; b < B; b++)
    for (let i = 0; i < T; i++)
      for (let j = 0; j <= i; j++)
        if (mask[b * T + j]) {
          scale[(b * T + i) * T + j] = 1 / Math.sqrt(headDim);
          fill[(b * T + i) * T + j] = 0;
        }
  return { scale, fill };
}

/** Rotary cos and sin [B, 1, 1, T, hd] at each token's position (core/model/masking.ts's position ids). */
function rotary(invFreq: Float32Array, mask: Int32Array, B: number, T: number): { cos: ort.Tensor; sin: ort.Tensor } {
  const half = invFreq.length;
  const hd = 2 * half;
  const positions = positionIds(mask, B, T);
  const cos = new Float32Array(B * T * hd);
  const sin = new Float32Array(B * T * hd);
  positions.forEach((pos, row) => {
    for (let f = 0; f < half; f++) {
      // As TfLlama: float32 position times float32 frequency, then cos and sin.
      const angle = Math.fround(pos * invFreq[f]!);
      for (const at of [f, f + half]) {
        cos[row * hd + at] = Math.cos(angle);
        sin[row * hd + at] = Math.sin(angle);
      }
    }
  });
  return { cos: f32(cos, [B, 1, 1, T, hd]), sin: f32(sin, [B, 1, 1, T, hd]) };
}
