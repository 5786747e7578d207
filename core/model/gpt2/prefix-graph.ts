/** A GPT-2 block as ONNX nodes: pre-LayerNorm attention and GELU MLP, Conv1D weights [in, out] with biases. */
import type { GPT2Config } from './config.ts';
import { MASKED_SCORE } from '../masking.ts';
import { linearShape, param, type BlockLinear, type GPT2Model } from './weights.ts';
import type { PrefixContext } from '../../onnx/prefix-context.ts';

/** Learned position embeddings, added to the token embeddings before block 0. */
export function gpt2Positions({ g, f32, positions }: PrefixContext, c: GPT2Config): string {
  return g.op('Gather', [f32('wpe.weight', [c.nPositions, c.nEmbd]), positions]);
}

export function gpt2Block(ctx: PrefixContext, model: GPT2Model, x: string, i: number): string {
  const { g, f32, allowed } = ctx;
  const c = model.config;
  const d = c.nEmbd;
  const hd = d / c.nHead;
  const linear = (input: string, name: BlockLinear) => {
    const prefix = `h.${i}.${name}`;
    return ctx.linear(input, prefix, param(model, `${prefix}.weight`), ...linearShape(c, name), param(model, `${prefix}.bias`));
  };
  const layerNorm = (input: string, prefix: string) =>
    g.op('LayerNormalization', [input, f32(`${prefix}.weight`, [d]), f32(`${prefix}.bias`, [d])], { axis: -1, epsilon: c.layerNormEpsilon });
  const heads = (t: string, perm: number[]) => g.op('Transpose', [g.op('Reshape', [t, g.ints([0, 0, c.nHead, hd])])], { perm });

  const [q, k, v] = g.node('Split', [linear(layerNorm(x, `h.${i}.ln_1`), 'attn.c_attn'), g.ints([d, d, d])], { axis: 2 }, 3);
  // Scaling q rather than the scores keeps one fewer [B, H, T, T] tensor alive (the device's memory peak).
  const scores = g.op('MatMul', [g.op('Mul', [heads(q!, [0, 2, 1, 3]), g.float(1 / Math.sqrt(hd))]), heads(k!, [0, 2, 3, 1])]);
  const probs = g.op('Softmax', [g.op('Where', [allowed, scores, g.float(MASKED_SCORE)])], { axis: -1 });
  const y = g.op('Reshape', [g.op('Transpose', [g.op('MatMul', [probs, heads(v!, [0, 2, 1, 3])])], { perm: [0, 2, 1, 3] }), g.ints([0, 0, d])]);
  const x2 = g.op('Add', [x, linear(y, 'attn.c_proj')]);
  const h = linear(layerNorm(x2, `h.${i}.ln_2`), 'mlp.c_fc');
  return g.op('Add', [x2, linear(g.op('Gelu', [h], { approximate: 'tanh' }), 'mlp.c_proj')]);
}

/** Blocks [0, cut) over the token embeddings, learned positions added first. */
export function gpt2PrefixBlocks(ctx: PrefixContext, model: GPT2Model, tokens: string, cut: number): string {
  let x = ctx.g.op('Add', [tokens, gpt2Positions(ctx, model.config)]);
  for (let i = 0; i < cut; i++) x = gpt2Block(ctx, model, x, i);
  return x;
}
