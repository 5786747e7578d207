/**
 * Llama parameters under their Hugging Face names without the `model.` prefix (`embed_tokens.weight`,
 * `layers.0.self_attn.q_proj.weight`, `norm.weight`, `lm_head.weight`), all float32. Linear weights keep nn.Linear's
 * layout [out, in], so `y = x @ W^T`; no biases anywhere.
 */
import { SCORE, type ParamLayout, type Params } from '../params.ts';
import type { LlamaConfig } from './config.ts';

export interface LlamaModel {
  config: LlamaConfig;
  params: Params;
}

/** The linear layers of a block, as PEFT's target_modules name them (`q_proj`, ...) under their module path. */
export const LLAMA_LINEARS = [
  'self_attn.q_proj',
  'self_attn.k_proj',
  'self_attn.v_proj',
  'self_attn.o_proj',
  'mlp.gate_proj',
  'mlp.up_proj',
  'mlp.down_proj',
] as const;
export type LlamaLinear = (typeof LLAMA_LINEARS)[number];

/** nn.Linear shape [out, in]. */
export function llamaLinearShape(c: LlamaConfig, linear: LlamaLinear): [number, number] {
  const q = c.nHead * c.headDim;
  const kv = c.nKvHead * c.headDim;
  switch (linear) {
    case 'self_attn.q_proj':
      return [q, c.nEmbd];
    case 'self_attn.k_proj':
    case 'self_attn.v_proj':
      return [kv, c.nEmbd];
    case 'self_attn.o_proj':
      return [c.nEmbd, q];
    case 'mlp.gate_proj':
    case 'mlp.up_proj':
      return [c.nInner, c.nEmbd];
    case 'mlp.down_proj':
      return [c.nEmbd, c.nInner];
  }
}

export const LM_HEAD = 'lm_head.weight';

export function llamaParamShapes(c: LlamaConfig): Map<string, number[]> {
  const shapes = new Map<string, number[]>([['embed_tokens.weight', [c.vocabSize, c.nEmbd]]]);
  // A block's modules in the order LlamaDecoderLayer registers them (its state_dict's order, which decides how
  // save_pretrained splits shards): attention, MLP, then the two norms.
  for (let i = 0; i < c.nLayer; i++) {
    for (const linear of LLAMA_LINEARS) shapes.set(`layers.${i}.${linear}.weight`, llamaLinearShape(c, linear));
    shapes.set(`layers.${i}.input_layernorm.weight`, [c.nEmbd]);
    shapes.set(`layers.${i}.post_attention_layernorm.weight`, [c.nEmbd]);
  }
  shapes.set('norm.weight', [c.nEmbd]);
  if (!c.tieWordEmbeddings) shapes.set(LM_HEAD, [c.vocabSize, c.nEmbd]);
  shapes.set(SCORE, [c.numLabels, c.nEmbd]);
  return shapes;
}

/**
 * The parameters in the order the forward uses them (per block: input norm, attention, post-attention norm, MLP), which
 * is the order initialisation draws them in, so that a seed gives the weights it always gave.
 */
export function llamaForwardOrder(c: LlamaConfig): Array<[string, number[]]> {
  const shapes = llamaParamShapes(c);
  const names = ['embed_tokens.weight'];
  for (let i = 0; i < c.nLayer; i++) {
    const linear = (l: string) => `layers.${i}.${l}.weight`;
    names.push(`layers.${i}.input_layernorm.weight`, ...LLAMA_LINEARS.slice(0, 4).map(linear));
    names.push(`layers.${i}.post_attention_layernorm.weight`, ...LLAMA_LINEARS.slice(4).map(linear));
  }
  names.push('norm.weight', LM_HEAD, SCORE);
  return names.filter((n) => shapes.has(n)).map((n) => [n, shapes.get(n)!]);
}

/** How Llama sits in checkpoints: `model.` prefix, heads beside it; rotary buffers and a tied head carry nothing. */
export function llamaLayout(c: LlamaConfig): ParamLayout {
  return {
    family: 'Llama',
    shapes: llamaParamShapes(c),
    prefix: 'model.',
    unprefixed: new Set([LM_HEAD, SCORE]),
    optional: new Set([SCORE]),
    ignored: c.tieWordEmbeddings ? /^(layers\.\d+\.self_attn\.rotary_emb\.inv_freq|lm_head\.weight)$/ : /^layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/,
  };
}
