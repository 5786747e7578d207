/**
 * The device prefix as an ONNX graph: token + position embeddings and blocks [0, cut) of GPT-2, written from
 * TypeScript. Inputs `input_ids` [B, T] int64 and `attention_mask` [B, T] int64; output `hidden_states` [B, T, d]
 * float32 at the cut. Same padding conventions as every other implementation (core/model/masking.ts).
 *
 * weights 'int8': every block linear is stored as int8 with a per-column scale and runs as
 * DynamicQuantizeLinear -> MatMulInteger (measured 2-3x faster than dequantize-then-MatMul in onnxruntime-web, and
 * smaller); the token embedding table is int8 with a per-row scale. Position embeddings and norms stay float32.
 *
 * tokenEmbedding 'input': the graph takes `inputs_embeds` [B, T, d] float32 instead of `input_ids`, and the caller
 * looks token rows up itself (core/onnx/embedding.ts). The vocabulary table then stays outside the ONNX session,
 * which otherwise holds it several times over in WebAssembly memory: that is what lets GPT-2 small's int8 prefix
 * fit a Worker's 128 MB.
 */
import { MASKED_SCORE } from '../model/masking.ts';
import { linearShape, param, type BlockLinear, type GPT2Model } from '../model/weights.ts';
import { DT, GraphBuilder } from './graph.ts';
import { quantizeInt8 } from './quantize.ts';

export type PrefixWeights = 'fp32' | 'int8';

export interface PrefixOptions {
  cut: number;
  weights?: PrefixWeights;
  tokenEmbedding?: 'graph' | 'input';
}

export const PREFIX_OPSET = 20;

export function exportPrefix(model: GPT2Model, { cut, weights = 'fp32', tokenEmbedding = 'graph' }: PrefixOptions): Uint8Array {
  const c = model.config;
  if (!Number.isInteger(cut) || cut < 0 || cut > c.nLayer) {
    throw new Error(`cut ${cut} is out of range: a GPT-2 with ${c.nLayer} blocks has cuts 0..${c.nLayer}`);
  }
  const g = new GraphBuilder();
  const d = c.nEmbd;
  const hd = d / c.nHead;
  const p = (name: string) => param(model, name);
  const f32 = (name: string, dims: number[]) => g.initializer(name, DT.FLOAT, dims, p(name));

  const linear = (x: string, layer: number, name: BlockLinear): string => {
    const prefix = `h.${layer}.${name}`;
    const [inp, out] = linearShape(c, name);
    const bias = f32(`${prefix}.bias`, [out]);
    if (weights === 'fp32') return g.op('Add', [g.op('MatMul', [x, f32(`${prefix}.weight`, [inp, out])]), bias]);
    const q = quantizeInt8(p(`${prefix}.weight`), inp, out, 'column');
    const wq = g.initializer(`${prefix}.weight_int8`, DT.INT8, [inp, out], q.values);
    const ws = g.initializer(`${prefix}.weight_scale`, DT.FLOAT, [out], q.scales);
    return g.op('DynamicQuantizeMatMul', [x, wq, ws, '', bias], {}, 'com.microsoft');
  };

  const layerNorm = (x: string, prefix: string) =>
    g.op('LayerNormalization', [x, f32(`${prefix}.weight`, [d]), f32(`${prefix}.bias`, [d])], { axis: -1, epsilon: c.layerNormEpsilon });

  const gelu = (x: string) => g.op('Gelu', [x], { approximate: 'tanh' });

  // Token embeddings.
  let tokens: string;
  let shapeSource: string; // a [B, T, ...] input to read the sequence length from
  if (tokenEmbedding === 'input') {
    tokens = shapeSource = 'inputs_embeds';
  } else if (weights === 'fp32') {
    tokens = g.op('Gather', [f32('wte.weight', [c.vocabSize, d]), 'input_ids']);
    shapeSource = 'input_ids';
  } else {
    const q = quantizeInt8(p('wte.weight'), c.vocabSize, d, 'row');
    const rows = g.op('Gather', [g.initializer('wte.weight_int8', DT.INT8, [c.vocabSize, d], q.values), 'input_ids']);
    const scales = g.op('Gather', [g.initializer('wte.weight_scale', DT.FLOAT, [c.vocabSize], q.scales), 'input_ids']);
    tokens = g.op('Mul', [g.op('Cast', [rows], { to: DT.FLOAT }), g.op('Unsqueeze', [scales, g.ints([-1])])]);
    shapeSource = 'input_ids';
  }

  // Position ids count real tokens only: max(cumsum(mask) - 1, 0).
  const positions = g.op('Max', [g.op('Sub', [g.op('CumSum', ['attention_mask', g.ints([1], true)]), g.ints([1], true)]), g.ints([0], true)]);
  let x = g.op('Add', [tokens, g.op('Gather', [f32('wpe.weight', [c.nPositions, d]), positions])]);

  // allowed[b, 0, i, j] = j <= i and mask[b, j]; computed once, shared by every block (none at cut 0).
  const attentionAllowed = () => {
    const seq = g.op('Gather', [g.op('Shape', [shapeSource]), g.ints([1], true)]);
    const range = g.op('Range', [g.ints([0], true), seq, g.ints([1], true)]);
    const causal = g.op('LessOrEqual', [g.op('Unsqueeze', [range, g.ints([0])]), g.op('Unsqueeze', [range, g.ints([1])])]);
    const keys = g.op('Cast', [g.op('Unsqueeze', ['attention_mask', g.ints([1, 2])])], { to: DT.BOOL });
    return g.op('And', [causal, keys]);
  };
  const allowed = cut > 0 ? attentionAllowed() : '';
  const heads = (t: string, perm: number[]) => g.op('Transpose', [g.op('Reshape', [t, g.ints([0, 0, c.nHead, hd])])], { perm });

  for (let i = 0; i < cut; i++) {
    const [q, k, v] = g.node('Split', [linear(layerNorm(x, `h.${i}.ln_1`), i, 'attn.c_attn'), g.ints([d, d, d])], { axis: 2 }, 3);
    // Scaling q rather than the scores keeps one fewer [B, H, T, T] tensor alive (the device's memory peak).
    const scores = g.op('MatMul', [g.op('Mul', [heads(q, [0, 2, 1, 3]), g.float(1 / Math.sqrt(hd))]), heads(k, [0, 2, 3, 1])]);
    const probs = g.op('Softmax', [g.op('Where', [allowed, scores, g.float(MASKED_SCORE)])], { axis: -1 });
    const y = g.op('Reshape', [g.op('Transpose', [g.op('MatMul', [probs, heads(v, [0, 2, 1, 3])])], { perm: [0, 2, 1, 3] }), g.ints([0, 0, d])]);
    x = g.op('Add', [x, linear(y, i, 'attn.c_proj')]);
    const h = linear(layerNorm(x, `h.${i}.ln_2`), i, 'mlp.c_fc');
    x = g.op('Add', [x, linear(gelu(h), i, 'mlp.c_proj')]);
  }

  const inputs =
    tokenEmbedding === 'input'
      ? [{ name: 'inputs_embeds', type: DT.FLOAT, dims: ['batch', 'sequence', d] }]
      : [{ name: 'input_ids', type: DT.INT64, dims: ['batch', 'sequence'] }];
  return g.build({
    name: `gpt2-prefix-cut${cut}`,
    inputs: [...inputs, { name: 'attention_mask', type: DT.INT64, dims: ['batch', 'sequence'] }],
    outputs: [{ name: PREFIX_OUTPUT, type: DT.FLOAT, dims: ['batch', 'sequence', d], from: x }],
    opset: PREFIX_OPSET,
    metadata: { cut: String(cut), weights, token_embedding: tokenEmbedding, n_embd: String(d), model_type: 'gpt2' },
  });
}

export const PREFIX_OUTPUT = 'hidden_states';

