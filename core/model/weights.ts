/**
 * GPT-2 parameters under their Hugging Face names (`wte.weight`, `h.0.attn.c_attn.weight`, ...), all float32.
 * Linear weights keep Hugging Face's Conv1D layout [in, out], so `y = x @ W + b`.
 */
import { SafetensorsError } from '../tensors/safetensors.ts';
import { toFloat32, type Tensor } from '../tensors/tensor.ts';
import type { GPT2Config } from './config.ts';

export type Params = Map<string, Float32Array>;

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

/** The sequence-classification head (GPT2ForSequenceClassification), a Linear without bias: [num_labels, n_embd]. */
export const SCORE = 'score.weight';

/** Tensors of Hugging Face checkpoints that carry no parameters of ours: causal-mask buffers and the tied LM head. */
const IGNORED = /^(h\.\d+\.attn\.(bias|masked_bias)|lm_head\.weight)$/;

/**
 * Reads GPT-2 parameters from safetensors tensors, with or without the `transformer.` prefix.
 * A checkpoint without `score.weight` (GPT2Model, GPT2LMHeadModel) loads without a classification head.
 */
export function paramsFromTensors(config: GPT2Config, tensors: Map<string, Tensor>, file = 'model.safetensors'): Params {
  const shapes = paramShapes(config);
  const params: Params = new Map();
  for (const [rawName, tensor] of tensors) {
    const name = rawName.startsWith('transformer.') ? rawName.slice('transformer.'.length) : rawName;
    if (IGNORED.test(name)) continue;
    const shape = shapes.get(name);
    if (!shape) throw new SafetensorsError(file, 'unexpected tensor: not a GPT-2 parameter', rawName);
    if (shape.length !== tensor.shape.length || shape.some((d, i) => d !== tensor.shape[i])) {
      throw new SafetensorsError(
        file,
        `shape ${JSON.stringify(tensor.shape)} does not match ${JSON.stringify(shape)} expected from config.json`,
        rawName,
      );
    }
    if (!['F32', 'F16', 'BF16', 'F64'].includes(tensor.dtype)) {
      throw new SafetensorsError(file, `dtype ${tensor.dtype} is not a floating-point type`, rawName);
    }
    if (params.has(name)) throw new SafetensorsError(file, 'stored twice (with and without the transformer. prefix)', rawName);
    params.set(name, toFloat32(tensor));
  }
  for (const name of shapes.keys()) {
    if (!params.has(name) && name !== SCORE) throw new SafetensorsError(file, 'missing', name);
  }
  return params;
}

/** Parameters as tensors under the names GPT2ForSequenceClassification saves (`transformer.` prefix, `score.weight`). */
export function paramsToTensors(model: GPT2Model): Map<string, Tensor> {
  const tensors = new Map<string, Tensor>();
  for (const [name, shape] of paramShapes(model.config)) {
    const data = model.params.get(name);
    if (data) tensors.set(name === SCORE ? name : `transformer.${name}`, { dtype: 'F32', shape, data });
  }
  return tensors;
}

export function param(model: GPT2Model, name: string): Float32Array {
  const p = model.params.get(name);
  if (!p) {
    throw new Error(name === SCORE ? `the model has no classification head (${SCORE}); initialise one first` : `missing parameter ${name}`);
  }
  return p;
}
