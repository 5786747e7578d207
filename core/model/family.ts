/**
 * The model families this project runs, by Hugging Face `model_type`: each family is a folder of plain data and plain
 * math (config, parameter layout, init, float64 reference) and one descriptor (`Family`) registered below. Everything
 * else asks the family of a config what it needs and never compares family names.
 */
import { ConfigError, parseJsonObject } from './config-json.ts';
import type { Family, Model, ModelConfig, ModelType } from './family-type.ts';
import { GPT2_FAMILY } from './gpt2/family.ts';
import type { GPT2Model } from './gpt2/weights.ts';
import { LLAMA_FAMILY } from './llama/family.ts';
import type { ParamLayout } from './params.ts';
import type { ShapeOptions } from './shape.ts';

export type { Family, Model, ModelConfig, ModelType } from './family-type.ts';

const FAMILIES = { gpt2: GPT2_FAMILY, llama: LLAMA_FAMILY } as const satisfies { [T in ModelType]: Family<Extract<ModelConfig, { modelType: T }>> };

export const MODEL_TYPES = Object.keys(FAMILIES) as ModelType[];

/** The names of the families that have a property, for messages: "Llama", "GPT-2, Llama". */
export function familyNames(where: (f: Family) => boolean): string {
  return MODEL_TYPES.map(familyOf)
    .filter(where)
    .map((f) => f.name)
    .join(', ');
}

/** The family of a config (or of a model_type). */
export function familyOf(c: ModelConfig | ModelType): Family {
  return FAMILIES[typeof c === 'string' ? c : c.modelType] as unknown as Family;
}

/** Parses `config.json` text of any supported family; `file` names the file in errors. */
export function parseModelConfig(text: string, file = 'config.json'): ModelConfig {
  const raw = parseJsonObject(text, file);
  const type = raw.model_type;
  if (typeof type !== 'string' || !Object.hasOwn(FAMILIES, type)) {
    throw new ConfigError(
      file,
      `unsupported model_type ${JSON.stringify(type)}: this version supports ${MODEL_TYPES.map((t) => JSON.stringify(t)).join(', ')} (Hugging Face ${MODEL_TYPES.map((t) => familyOf(t).name).join(' and ')} checkpoints)`,
    );
  }
  return familyOf(type as ModelType).parseConfig(raw, file);
}

export function modelConfigToJson(c: ModelConfig): Record<string, unknown> {
  return familyOf(c).configToJson(c);
}

export function paramLayout(c: ModelConfig): ParamLayout {
  return familyOf(c).layout(c);
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
  const f = familyOf(c);
  const linears = f.linears.map((linear) => {
    const [inp, out] = f.linearInOut(c, linear);
    return { linear, inp, out };
  });
  const width = f.attentionWidth(c);
  return [...linears.slice(0, f.linearsBeforeAttention), { attention: width }, { attention: width }, ...linears.slice(f.linearsBeforeAttention)];
}

/** The weights of a block's linears (norms and biases left out). */
export function blockLinearWeights(c: ModelConfig): number {
  return blockMatmuls(c).reduce((a, m) => a + ('linear' in m ? m.inp * m.out : 0), 0);
}

/** The linears of a block by module path, the names LoRA targets and PEFT keys use. */
export function blockLinears(c: ModelConfig): readonly string[] {
  return familyOf(c).linears;
}

/** A block's module path under the base model, as parameter names and PEFT keys spell it: `h.3`, `layers.3`. */
export function blockPath(c: ModelConfig, layer: number): string {
  return familyOf(c).blockPath(layer);
}

/** A block linear's [in, out]. */
export function linearInOut(c: ModelConfig, linear: string): [number, number] {
  const m = blockMatmuls(c).find((x) => 'linear' in x && x.linear === linear);
  if (!m || !('linear' in m)) throw new Error(`'${linear}' is not a ${c.modelType} block linear: use ${blockLinears(c).join(', ')}`);
  return [m.inp, m.out];
}

/** A randomly initialised model of a family and shape; throws naming the option that does not fit. */
export function makeModel(type: ModelType, o: ShapeOptions): Model {
  return familyOf(type).make(o) as Model;
}
