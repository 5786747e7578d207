/**
 * What OrtBlocks needs of a family: its block graphs (training and inference), a block's weights as graph inputs,
 * the tape's names and shapes, what every block of a batch shares (the attention mask; Llama's rotary cos and sin),
 * the token embedding, and the LM head. The one place that picks the family's graphs.
 */
import * as ort from 'onnxruntime-node';
import { linearInOut, type Model } from '../../core/model/family.ts';
import { ropeInvFreq } from '../../core/model/llama/reference.ts';
import { MASKED_SCORE, positionIds } from '../../core/model/masking.ts';
import { requireParam } from '../../core/model/params.ts';
import { BLOCK_LINEARS, linearShape, type BlockLinear } from '../../core/model/weights.ts';
import { llamaLinearShape, LM_HEAD, type LlamaLinear } from '../../core/model/llama/weights.ts';
import { lookupTokens, tokenTable } from '../../core/onnx/embedding.ts';
import { GPT2_BLOCK_WEIGHTS, GPT2_POOLED_LINEARS, gpt2BackwardGraph, gpt2ForwardGraph, gpt2SavedNames, gpt2SavedShapes } from './gpt2-graphs.ts';
import { POOLED_ROWS } from './pooled-graph.ts';
import type { LoraGraphSpec } from './lora-graph.ts';
import { gatherRows } from './rows.ts';
import { LLAMA_BLOCK_WEIGHTS, LLAMA_POOLED_LINEARS, llamaBackwardGraph, llamaForwardGraph, llamaSavedNames, llamaSavedShapes } from './llama-graphs.ts';
import { llamaLmHeadGraph } from './llama-head-graph.ts';

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

const f32 = (data: Float32Array, dims: number[]): ort.Tensor => new ort.Tensor('float32', data, dims);

export function blockFamily(model: Model, lora: LoraGraphSpec): BlockFamily {
  const c = model.config;
  const param = (name: string) => requireParam(model.params, name);
  const table = tokenTable(model, 'fp32');
  const inference = (adapted: boolean) => (adapted ? { ...lora, dropout: false } : { ...lora, targets: [] });
  const common = { nEmbd: c.nEmbd, linearInOut: (linear: string) => linearInOut(c, linear) };
  if (c.modelType === 'llama') {
    // Once per run, not per batch.
    const invFreq = Float32Array.from(ropeInvFreq(c));
    return {
      ...common,
      forwardGraph: (pooled) => llamaForwardGraph(c, lora, { pooled }),
      inferenceGraph: (adapted) => llamaForwardGraph(c, inference(adapted), { inference: true }),
      cacheShape: (B, P) => [B, c.nKvHead, 1, P, c.headDim],
      embed: (ids) => lookupTokens(table, ids),
      backwardGraph: (needDx, pooled) => llamaBackwardGraph(c, lora, needDx, pooled),
      weights: (i) =>
        Object.fromEntries(
          LLAMA_BLOCK_WEIGHTS.map((name) => [
            name,
            f32(
              param(`layers.${i}.${name}`),
              name.endsWith('layernorm.weight') ? [c.nEmbd] : llamaLinearShape(c, name.replace(/\.weight$/, '') as LlamaLinear),
            ),
          ]),
        ),
      saved: llamaSavedNames(c, lora),
      savedShapes: (B, T, pooled) => llamaSavedShapes(c, lora, B, T, pooled),
      lmHead: {
        graph: (output) => llamaLmHeadGraph(c, output),
        // The token table when tied; onnxruntime reads the checkpoint's own buffer, no copy.
        weights: {
          'norm.weight': f32(param('norm.weight'), [c.nEmbd]),
          head: f32(param(c.tieWordEmbeddings ? 'embed_tokens.weight' : LM_HEAD), [c.vocabSize, c.nEmbd]),
        },
      },
      shared: (mask, B, K, T = K) => {
        const m = attentionArrays(mask, B, K, c.headDim, T);
        return { scale: f32(m.scale, [B, 1, 1, T, K]), fill: f32(m.fill, [B, 1, 1, T, K]), ...rotary(invFreq, mask, B, K, T) };
      },
      pooled: {
        linears: LLAMA_POOLED_LINEARS,
        // The keys keep every position's rotary angles; the pooled queries take theirs.
        shared: (shared, B, T, rows) => ({
          ...pooledMask(shared, B, T, rows, [B, 1, 1, 1, T]),
          cos: shared.cos!,
          sin: shared.sin!,
          pooled_cos: pickRows(shared.cos!, rows, [B, 1, 1, 1, c.headDim]),
          pooled_sin: pickRows(shared.sin!, rows, [B, 1, 1, 1, c.headDim]),
        }),
      },
    };
  }
  return {
    ...common,
    forwardGraph: (pooled) => gpt2ForwardGraph(c, lora, { pooled }),
    inferenceGraph: (adapted) => gpt2ForwardGraph(c, inference(adapted), { inference: true }),
    cacheShape: (B, P) => [B, c.nHead, P, c.nEmbd / c.nHead],
    embed: (ids, positions) => {
      const x = lookupTokens(table, ids);
      const wpe = param('wpe.weight');
      const d = c.nEmbd;
      positions.forEach((pos, r) => {
        for (let i = 0; i < d; i++) x[r * d + i]! += wpe[pos * d + i]!;
      });
      return x;
    },
    backwardGraph: (needDx, pooled) => gpt2BackwardGraph(c, lora, needDx, pooled),
    weights: (i) =>
      Object.fromEntries(
        GPT2_BLOCK_WEIGHTS.map((name) => {
          const linear = name.replace(/\.weight$/, '') as BlockLinear;
          const data = param(`h.${i}.${name}`);
          return [name, f32(data, BLOCK_LINEARS.includes(linear) ? linearShape(c, linear) : [data.length])];
        }),
      ),
    saved: gpt2SavedNames(c, lora),
    savedShapes: (B, T, pooled) => gpt2SavedShapes(c, lora, B, T, pooled),
    shared: (mask, B, K, T = K) => {
      const m = attentionArrays(mask, B, K, c.nEmbd / c.nHead, T);
      return { scale: f32(m.scale, [B, 1, T, K]), fill: f32(m.fill, [B, 1, T, K]) };
    },
    pooled: {
      linears: GPT2_POOLED_LINEARS,
      shared: (shared, B, T, rows) => pooledMask(shared, B, T, rows, [B, 1, 1, T]),
    },
  };
}

/** Rows `rows` of a tensor whose rows are a batch's B T positions, shaped `dims`. */
function pickRows(t: ort.Tensor, rows: Int32Array, dims: number[]): ort.Tensor {
  return f32(gatherRows(t.data as Float32Array, rows, dims.at(-1)!), dims);
}

/** The pooled rows (b T + t) and, from the whole batch's mask in `shared`, their queries' rows of it, as `dims`. */
function pooledMask(shared: Record<string, ort.Tensor>, B: number, T: number, rows: Int32Array, dims: number[]): Record<string, ort.Tensor> {
  return {
    scale: pickRows(shared.scale!, rows, dims),
    fill: pickRows(shared.fill!, rows, dims),
    [POOLED_ROWS]: new ort.Tensor('int64', BigInt64Array.from(rows, BigInt), [B]),
  };
}

/**
 * The attention mask as the block graphs apply it, scores * scale + fill, [B, T, K] for the last T of K positions:
 * scale 1/sqrt(head_dim) where query i (position K - T + i) may see key j (j <= K - T + i, and j a real token) and 0
 * elsewhere, fill 0 or MASKED_SCORE (gpu-server/model/ops.attentionMask).
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

/** Rotary cos and sin [B, 1, 1, T, hd] at the positions of the last T of K tokens. */
function rotary(invFreq: Float32Array, mask: Int32Array, B: number, K: number, T: number): { cos: ort.Tensor; sin: ort.Tensor } {
  const half = invFreq.length;
  const hd = 2 * half;
  const cos = new Float32Array(B * T * hd);
  const sin = new Float32Array(B * T * hd);
  queryPositions(mask, B, K, T).forEach((pos, row) => {
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
