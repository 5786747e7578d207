/**
 * A Llama block as ONNX nodes: RMSNorm, rotary embeddings, grouped-query attention, SwiGLU MLP, no biases.
 *
 * Grouped-query attention without copying keys and values: queries are laid out [B, KV, rep, T, hd] (the rep query
 * heads that share a key/value head side by side) and keys/values [B, KV, 1, T, hd], so MatMul's broadcasting pairs
 * them. A device never holds H copies of K and V.
 */
import type { LlamaConfig } from './config.ts';
import { ropeInvFreq } from './reference.ts';
import { MASKED_SCORE } from '../masking.ts';
import { requireParam } from '../params.ts';
import { llamaLinearShape, type LlamaLinear, type LlamaModel } from './weights.ts';
import { DT } from '../../onnx/graph.ts';
import type { PrefixContext } from '../../onnx/prefix-context.ts';

/** What every block shares: rotary cos/sin [B, 1, 1, T, hd] from the position ids, and the mask as [B, 1, 1, T, T]. */
export interface LlamaShared {
  cos: string;
  sin: string;
  allowed: string;
}

export function llamaShared({ g, positions, allowed }: PrefixContext, c: LlamaConfig): LlamaShared {
  const invFreq = g.initializer('rope.inv_freq', DT.FLOAT, [c.headDim / 2], Float32Array.from(ropeInvFreq(c)));
  const freqs = g.op('Mul', [g.op('Unsqueeze', [g.op('Cast', [positions], { to: DT.FLOAT }), g.ints([-1])]), invFreq]);
  const angles = g.op('Unsqueeze', [g.op('Concat', [freqs, freqs], { axis: -1 }), g.ints([1, 2])]);
  return { cos: g.op('Cos', [angles]), sin: g.op('Sin', [angles]), allowed: g.op('Unsqueeze', [allowed, g.ints([1])]) };
}

/** nn.Linear's [out, in] as [in, out]. */
function transposed(w: Float32Array, out: number, inp: number): Float32Array {
  const t = new Float32Array(w.length);
  for (let o = 0; o < out; o++) for (let i = 0; i < inp; i++) t[i * out + o] = w[o * inp + i];
  return t;
}

export function llamaBlock(ctx: PrefixContext, model: LlamaModel, shared: LlamaShared, x: string, i: number): string {
  const { g } = ctx;
  const c = model.config;
  const { nKvHead: KV, headDim: hd } = c;
  const rep = c.nHead / KV;
  const linear = (input: string, name: LlamaLinear) => {
    const prefix = `layers.${i}.${name}`;
    const [out, inp] = llamaLinearShape(c, name);
    return ctx.linear(input, prefix, transposed(requireParam(model.params, `${prefix}.weight`), out, inp), inp, out);
  };
  const rmsNorm = (input: string, name: string) => {
    const meanSquare = g.op('ReduceMean', [g.op('Mul', [input, input]), g.ints([-1])], { keepdims: 1 });
    const normed = g.op('Mul', [input, g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [meanSquare, g.float(c.rmsNormEps)])])])]);
    return g.op('Mul', [normed, ctx.f32(`layers.${i}.${name}.weight`, [c.nEmbd])]);
  };
  // [B, T, heads * hd] -> [B, KV, heads / KV, T, hd]
  const heads = (t: string, perKv: number) => g.op('Transpose', [g.op('Reshape', [t, g.ints([0, 0, KV, perKv, hd])])], { perm: [0, 2, 3, 1, 4] });
  const rotate = (t: string) => {
    const [a, b] = g.node('Split', [t, g.ints([hd / 2, hd / 2])], { axis: -1 }, 2);
    const half = g.op('Concat', [g.op('Neg', [b!]), a!], { axis: -1 });
    return g.op('Add', [g.op('Mul', [t, shared.cos]), g.op('Mul', [half, shared.sin])]);
  };

  const h = rmsNorm(x, 'input_layernorm');
  const q = rotate(heads(linear(h, 'self_attn.q_proj'), rep));
  const k = rotate(heads(linear(h, 'self_attn.k_proj'), 1));
  const v = heads(linear(h, 'self_attn.v_proj'), 1);
  const scores = g.op('MatMul', [g.op('Mul', [q, g.float(1 / Math.sqrt(hd))]), g.op('Transpose', [k], { perm: [0, 1, 2, 4, 3] })]);
  const probs = g.op('Softmax', [g.op('Where', [shared.allowed, scores, g.float(MASKED_SCORE)])], { axis: -1 });
  const o = g.op('Reshape', [g.op('Transpose', [g.op('MatMul', [probs, v])], { perm: [0, 3, 1, 2, 4] }), g.ints([0, 0, c.nHead * hd])]);
  const x2 = g.op('Add', [x, linear(o, 'self_attn.o_proj')]);
  const h2 = rmsNorm(x2, 'post_attention_layernorm');
  const gate = linear(h2, 'mlp.gate_proj');
  const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), linear(h2, 'mlp.up_proj')]);
  return g.op('Add', [x2, linear(act, 'mlp.down_proj')]);
}

/** Blocks [0, cut) over the token embeddings, rotary tables computed once for all of them. */
export function llamaPrefixBlocks(ctx: PrefixContext, model: LlamaModel, tokens: string, cut: number): string {
  if (cut === 0) return tokens;
  const shared = llamaShared(ctx, model.config);
  let x = tokens;
  for (let i = 0; i < cut; i++) x = llamaBlock(ctx, model, shared, x, i);
  return x;
}
