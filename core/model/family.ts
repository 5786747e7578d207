/**
 * The model families this project runs, by Hugging Face `model_type`. Each is one folder of plain data and plain
 * math (config, parameter layout, init, float64 reference); everything else takes the family from the model.
 */
import { ConfigError, configToJson, parseGpt2Config, parseJsonObject, type GPT2Config } from './config.ts';
import { llamaConfigToJson, parseLlamaConfig, type LlamaConfig } from './llama/config.ts';
import { LLAMA_LINEARS, llamaLayout, llamaLinearShape, type LlamaModel } from './llama/weights.ts';
import type { ParamLayout } from './params.ts';
import { BLOCK_LINEARS, gpt2Layout, linearShape, type GPT2Model } from './weights.ts';

export type ModelConfig = GPT2Config | LlamaConfig;
export type Model = GPT2Model | LlamaModel;
export type ModelType = ModelConfig['modelType'];

export const MODEL_TYPES: readonly ModelType[] = ['gpt2', 'llama'];

/** Parses `config.json` text of any supported family; `file` names the file in errors. */
export function parseModelConfig(text: string, file = 'config.json'): ModelConfig {
  const raw = parseJsonObject(text, file);
  switch (raw.model_type) {
    case 'gpt2':
      return parseGpt2Config(raw, file);
    case 'llama':
      return parseLlamaConfig(raw, file);
    default:
      throw new ConfigError(file, `unsupported model_type ${JSON.stringify(raw.model_type)}: this version supports ${MODEL_TYPES.map((t) => JSON.stringify(t)).join(', ')} (Hugging Face GPT-2 and Llama checkpoints)`);
  }
}

export function modelConfigToJson(c: ModelConfig): Record<string, unknown> {
  return c.modelType === 'llama' ? llamaConfigToJson(c) : configToJson(c);
}

export function paramLayout(c: ModelConfig): ParamLayout {
  return c.modelType === 'llama' ? llamaLayout(c) : gpt2Layout(c);
}

/** The model as GPT-2, for the parts that do not run Llama yet; `what` names the part in the error. */
export function asGpt2(model: Model, what: string): GPT2Model {
  if (model.config.modelType !== 'gpt2') throw new Error(`${what} runs GPT-2 models only so far; this model's model_type is "${model.config.modelType}"`);
  return model as GPT2Model;
}

/** One matrix product of a block: a linear [in, out] by its module path, or attention's two over heads * head_dim. */
export type BlockMatmul = { linear: string; inp: number; out: number } | { attention: number };

/** A block's matrix products in forward order (what FLOP counts and LoRA placement need). */
export function blockMatmuls(c: ModelConfig): BlockMatmul[] {
  const linears = c.modelType === 'llama'
    ? LLAMA_LINEARS.map((linear) => { const [out, inp] = llamaLinearShape(c, linear); return { linear, inp, out }; })
    : BLOCK_LINEARS.map((linear) => { const [inp, out] = linearShape(c, linear); return { linear, inp, out }; });
  const width = c.modelType === 'llama' ? c.nHead * c.headDim : c.nEmbd;
  const beforeAttention = c.modelType === 'llama' ? 3 : 1; // q, k, v | c_attn
  return [...linears.slice(0, beforeAttention), { attention: width }, { attention: width }, ...linears.slice(beforeAttention)];
}

/** The weights of a block's linears (norms and biases left out). */
export function blockLinearWeights(c: ModelConfig): number {
  return blockMatmuls(c).reduce((a, m) => a + ('linear' in m ? m.inp * m.out : 0), 0);
}

/** The linears of a block by module path, the names LoRA targets and PEFT keys use. */
export function blockLinears(c: ModelConfig): readonly string[] {
  return c.modelType === 'llama' ? LLAMA_LINEARS : BLOCK_LINEARS;
}

/** A block's module path under the base model, as parameter names and PEFT keys spell it: `h.3`, `layers.3`. */
export function blockPath(c: ModelConfig, layer: number): string {
  return c.modelType === 'llama' ? `layers.${layer}` : `h.${layer}`;
}

/** A block linear's [in, out]. */
export function linearInOut(c: ModelConfig, linear: string): [number, number] {
  const m = blockMatmuls(c).find((x) => 'linear' in x && x.linear === linear);
  if (!m || !('linear' in m)) throw new Error(`'${linear}' is not a ${c.modelType} block linear: use ${blockLinears(c).join(', ')}`);
  return [m.inp, m.out];
}
