/**
 * What OrtBlocks needs of a family (`BlockFamily`): its block graphs (training and inference), a block's weights as
 * graph inputs, the tape's names and shapes, what every block of a batch shares (the attention mask; Llama's rotary
 * cos and sin), the token embedding, and the LM head; and the helpers every family's implementation shares. Each
 * family's is in its own file (gpt2-family.ts, llama-family.ts), picked in families.ts.
 */
import * as ort from 'onnxruntime-node';
import { linearInOut, type Model } from '../../../core/model/family.ts';
import { MASKED_SCORE, positionIds } from '../../../core/model/masking.ts';
import { requireParam } from '../../../core/model/params.ts';
import { tokenTable } from '../../../core/onnx/embedding.ts';
import type { LoraGraphSpec } from '../../../core/onnx/lora-graph.ts';
import { POOLED_ROWS } from '../../../core/onnx/pooled-graph.ts';
import { gatherRows } from './rows.ts';

export interface BlockFamily {
  nEmbd: number;
  /** `pooled`: the block after its attention on one row of each batch row (pooled.shared's), for a head that reads no other. */
  forwardGraph(pooled?: boolean): Uint8Array;
  /** The forward without a tape, with a KV cache; adapted: with LoRA (no dropout), otherwise the frozen block alone. */
  inferenceGraph(adapted: boolean): Uint8Array;
  /** The KV cache's shape for B rows of P positions. */
  cacheShape(B: number, P: number): number[];
  /** Token ids [B, T] at their positions -> the first block's input [B, T, d]. */
  embed(ids: ArrayLike<number>, positions: Int32Array): Float32Array;
  backwardGraph(needDx: boolean, pooled?: boolean): Uint8Array;
  /** Block i's frozen weights, as the graphs take them. */
  weights(i: number): Record<string, ort.Tensor>;
  /** What the forward saves for the backward, and its shapes for a batch of B x T. */
  saved: string[];
  savedShapes(B: number, T: number, pooled?: boolean): Record<string, number[]>;
  /**
   * Inputs every block of a batch shares, from the attention mask of its keys [B, K]: the queries are the last T of
   * them (T = K without a cache).
   */
  shared(mask: Int32Array, B: number, K: number, T?: number): Record<string, ort.Tensor>;
  /** An adapted linear's [in, out]. */
  linearInOut(linear: string): [number, number];
  /**
   * Pooled graphs, where the family has them: the linears that run on the pooled rows only, and the inputs a pooled
   * block takes instead of `shared`'s, made from them (`shared` of the whole batch of B x T), for the rows (b T + t).
   */
  pooled?: { linears: readonly string[]; shared(shared: Record<string, ort.Tensor>, B: number, T: number, rows: Int32Array): Record<string, ort.Tensor> };
  /** The final norm and LM head: logits, or the causal-LM loss and its gradient (Llama's; GPT-2 trains classifiers). */
  lmHead?: { graph(output: 'logits' | 'loss'): Uint8Array; weights: Record<string, ort.Tensor> };
}

export const f32 = (data: Float32Array, dims: number[]): ort.Tensor => new ort.Tensor('float32', data, dims);

/** What every family's BlockFamily starts from: its parameters, its float32 token table and the shared fields. */
export function familyBasics(model: Model, lora: LoraGraphSpec) {
  const c = model.config;
  return {
    param: (name: string) => requireParam(model.params, name),
    table: tokenTable(model, 'fp32'),
    /** The graph options of inference: adapted (LoRA without dropout) or the frozen block alone. */
    inference: (adapted: boolean): LoraGraphSpec => (adapted ? { ...lora, dropout: false } : { ...lora, targets: [] }),
    common: { nEmbd: c.nEmbd, linearInOut: (linear: string) => linearInOut(c, linear) },
  };
}

/** Rows `rows` of a tensor whose rows are a batch's B T positions, shaped `dims`. */
export function pickRows(t: ort.Tensor, rows: Int32Array, dims: number[]): ort.Tensor {
  return f32(gatherRows(t.data as Float32Array, rows, dims.at(-1)!), dims);
}

/** The pooled rows (b T + t) and, from the whole batch's mask in `shared`, their queries' rows of it, as `dims`. */
export function pooledMask(shared: Record<string, ort.Tensor>, B: number, T: number, rows: Int32Array, dims: number[]): Record<string, ort.Tensor> {
  return {
    scale: pickRows(shared.scale!, rows, dims),
    fill: pickRows(shared.fill!, rows, dims),
    [POOLED_ROWS]: new ort.Tensor('int64', BigInt64Array.from(rows, BigInt), [B]),
  };
}

/**
 * The attention mask as the block graphs apply it, scores * scale + fill, [B, T, K] for the last T of K positions:
 * scale 1/sqrt(head_dim) where query i (position K - T + i) may see key j (j <= K - T + i, and j a real token) and 0
 * elsewhere, fill 0 or MASKED_SCORE (gpu-server/backends/tfjs/ops.attentionMask).
 */
export function attentionArrays(mask: Int32Array, B: number, K: number, headDim: number, T = K): { scale: Float32Array; fill: Float32Array } {
  const scale = new Float32Array(B * T * K);
  const fill = new Float32Array(B * T * K).fill(MASKED_SCORE);
  for (let b = 0; b < B; b++)
    for (let i = 0; i < T; i++)
      for (let j = 0; j <= K - T + i; j++)
        if (mask[b * K + j]) {
          scale[(b * T + i) * K + j] = 1 / Math.sqrt(headDim);
          fill[(b * T + i) * K + j] = 0;
        }
  return { scale, fill };
}

/** The position ids (core/model/masking.ts) of the last T of each row's K positions. */
export function queryPositions(mask: Int32Array, B: number, K: number, T = K): Int32Array {
  const all = positionIds(mask, B, K);
  if (T === K) return all;
  const out = new Int32Array(B * T);
  for (let b = 0; b < B; b++) out.set(all.subarray(b * K + K - T, (b + 1) * K), b * T);
  return out;
}
