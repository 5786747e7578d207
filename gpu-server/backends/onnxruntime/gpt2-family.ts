/** GPT-2's blocks on onnxruntime (BlockFamily): LayerNorm, learned positions, GELU MLP, Conv1D weights [in, out]. */
import type { GPT2Model } from '../../../core/model/gpt2/weights.ts';
import { BLOCK_LINEARS, linearShape, type BlockLinear } from '../../../core/model/gpt2/weights.ts';
import { lookupTokens } from '../../../core/onnx/embedding.ts';
import { attentionArrays, f32, familyBasics, pooledMask, type BlockFamily } from './block-family.ts';
import {
  GPT2_BLOCK_WEIGHTS,
  GPT2_POOLED_LINEARS,
  gpt2BackwardGraph,
  gpt2ForwardGraph,
  gpt2SavedNames,
  gpt2SavedShapes,
} from '../../../core/model/gpt2/block-graphs.ts';
import type { LoraGraphSpec } from '../../../core/onnx/lora-graph.ts';

export function gpt2BlockFamily(model: GPT2Model, lora: LoraGraphSpec): BlockFamily {
  const c = model.config;
  const { param, table, inference, common } = familyBasics(model, lora);
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
