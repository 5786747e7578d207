/** Llama's blocks on onnxruntime (BlockFamily): RMSNorm, rotary, grouped-query attention, SwiGLU, and the LM head. */
import type * as ort from 'onnxruntime-node';
import type { LlamaModel } from '../../../core/model/llama/weights.ts';
import { ropeInvFreq } from '../../../core/model/llama/reference.ts';
import { llamaLinearShape, LM_HEAD, type LlamaLinear } from '../../../core/model/llama/weights.ts';
import { lookupTokens } from '../../../core/onnx/embedding.ts';
import { attentionArrays, f32, familyBasics, pickRows, pooledMask, queryPositions, type BlockFamily } from './block-family.ts';
import type { LoraGraphSpec } from '../../../core/onnx/lora-graph.ts';
import {
  LLAMA_BLOCK_WEIGHTS,
  LLAMA_POOLED_LINEARS,
  llamaBackwardGraph,
  llamaForwardGraph,
  llamaSavedNames,
  llamaSavedShapes,
} from '../../../core/model/llama/block-graphs.ts';
import { llamaLmHeadGraph } from '../../../core/model/llama/head-graph.ts';

export function llamaBlockFamily(model: LlamaModel, lora: LoraGraphSpec): BlockFamily {
  const c = model.config;
  const { param, table, inference, common } = familyBasics(model, lora);
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
          f32(param(`layers.${i}.${name}`), name.endsWith('layernorm.weight') ? [c.nEmbd] : llamaLinearShape(c, name.replace(/\.weight$/, '') as LlamaLinear)),
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
