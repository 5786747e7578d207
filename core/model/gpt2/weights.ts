/**
 * GPT-2 parameters under their Hugging Face names (`wte.weight`, `h.0.attn.c_attn.weight`, ...), all float32.
 * Linear weights keep Hugging Face's Conv1D layout [in, out], so `y = x @ W + b`.
 */
import type { Tensor } from '../../tensors/tensor.ts';
import type { GPT2Config } from './config.ts';
import { paramsToTensors as writeParams, requireParam, SCORE, type ParamLayout, type Params } from '../params.ts';

export { SCORE } from '../params.ts';
export type { Params } from '../params.ts';

export interface GPT2Model {
  config: GPT2Config;
  params: Params;
}

/** The linear layers of a block, with their Conv1D shapes [in, out]. */
export const BLOCK_LINEARS = ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'] as const;
export type BlockLinear = (typeof BLOCK_LINEARS)[number];

export function linearShape(c: GPT2Config, linear: BlockLinear): [number, number] {
  switch (linear) {
    case 'attn.c_attn':
      return [c.nEmbd, 3 * c.nEmbd];
    case 'attn.c_proj':
      return [c.nEmbd, c.nEmbd];
    case 'mlp.c_fc':
      return [c.nEmbd, c.nInner];
    case 'mlp.c_proj':
      return [c.nInner, c.nEmbd];
  }
}

/** Every parameter's name and shape, in Hugging Face order. The classification head is included. */
export function paramShapes(c: GPT2Config): Map<string, number[]> {
  const shapes = new Map<string, number[]>([
    ['wte.weight', [c.vocabSize, c.nEmbd]],
    ['wpe.weight', [c.nPositions, c.nEmbd]],
  ]);
  for (let i = 0; i < c.nLayer; i++) {
    shapes.set(`h.${i}.ln_1.weight`, [c.nEmbd]);
    shapes.set(`h.${i}.ln_1.bias`, [c.nEmbd]);
    for (const linear of BLOCK_LINEARS) {
      const [inp, out] = linearShape(c, linear);
      shapes.set(`h.${i}.${linear}.weight`, [inp, out]);
      shapes.set(`h.${i}.${linear}.bias`, [out]);
      if (linear === 'attn.c_proj') {
        shapes.set(`h.${i}.ln_2.weight`, [c.nEmbd]);
        shapes.set(`h.${i}.ln_2.bias`, [c.nEmbd]);
      }
    }
  }
  shapes.set('ln_f.weight', [c.nEmbd]);
  shapes.set('ln_f.bias', [c.nEmbd]);
  shapes.set(SCORE, [c.numLabels, c.nEmbd]);
  return shapes;
}

/** How GPT-2 sits in Hugging Face checkpoints: `transformer.` prefix, head beside it; mask buffers and the tied LM head carry nothing. */
export function gpt2Layout(c: GPT2Config): ParamLayout {
  return {
    family: 'GPT-2',
    shapes: paramShapes(c),
    prefix: 'transformer.',
    unprefixed: new Set([SCORE]),
    optional: new Set([SCORE]),
    ignored: /^(h\.\d+\.attn\.(bias|masked_bias)|lm_head\.weight)$/,
  };
}

/** Parameters as tensors under the names GPT2ForSequenceClassification saves (`transformer.` prefix, `score.weight`). */
export function paramsToTensors(model: GPT2Model): Map<string, Tensor> {
  return writeParams(gpt2Layout(model.config), model.params);
}

export function param(model: GPT2Model, name: string): Float32Array {
  return requireParam(model.params, name);
}
