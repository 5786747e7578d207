/**
 * What a model family is (`Family`) and the configs and models of the families there are. The registry is
 * family.ts; each family's descriptor (its folder's family.ts) implements this interface.
 */
import type { SpecialTokens } from '../tokenizer/tokenizer.ts';
import type { PrefixContext } from '../onnx/prefix-context.ts';
import type { GPT2Config } from './gpt2/config.ts';
import type { GPT2Model } from './gpt2/weights.ts';
import type { LlamaConfig } from './llama/config.ts';
import type { LlamaModel } from './llama/weights.ts';
import type { ParamLayout, Params } from './params.ts';
import type { ShapeOptions } from './shape.ts';

export type ModelConfig = GPT2Config | LlamaConfig;
export type Model = GPT2Model | LlamaModel;
export type ModelType = ModelConfig['modelType'];

/** What the rest of the project asks of a family. */
export interface Family<C extends ModelConfig = ModelConfig> {
  modelType: C['modelType'];
  /** The family in messages: 'GPT-2', 'Llama'. */
  name: string;
  parseConfig(raw: Record<string, unknown>, file: string): C;
  configToJson(c: C): Record<string, unknown>;
  /** The dotted keys of configToJson's numbers that Hugging Face holds as floats (written `500000.0`, not `500000`). */
  floatFields: readonly string[];
  layout(c: C): ParamLayout;
  /** A block's linears by module path, as LoRA targets and PEFT keys name them, in forward order. */
  linears: readonly string[];
  linearInOut(c: C, linear: string): [number, number];
  /** How many of `linears` come before attention's two matrix products, and attention's width (heads x head_dim). */
  linearsBeforeAttention: number;
  attentionWidth(c: C): number;
  /** A block's module path under the base model: `h.3`, `layers.3`. */
  blockPath(layer: number): string;
  /** The token table's parameter name. */
  tokenTable: string;
  /** Whether positions have a learned table (GPT-2's wpe) rather than rotary embeddings. */
  learnedPositions: boolean;
  /** PEFT's fan_in_fan_out: the checkpoint keeps linears as [in, out] (Conv1D), not [out, in] (nn.Linear). */
  fanInFanOut: boolean;
  /** LoRA targets when a run names none. */
  defaultTargets: readonly string[];
  /** Devices hold the family's tokenizer themselves; otherwise they fetch the folder's tokenizer.json. */
  builtinTokenizer: boolean;
  specialTokens(c: C): SpecialTokens;
  /** The server generates with it (causal-LM tasks), stopping at these tokens. */
  generation: boolean;
  stopTokens(c: C): number[];
  /** What an adapter merged into the base makes, in words. */
  merged: string;
  /** The device prefix's blocks [0, cut) as ONNX nodes over the token embeddings (core/onnx/prefix.ts builds the rest). */
  /** A randomly initialised model of a shape (make-model, fixtures); throws naming the option that does not fit. */
  make(o: ShapeOptions): { config: C; params: Params };
  /** How make-model stores weights unless told: as the family's published checkpoints of that shape are stored. */
  storedDtype(o: ShapeOptions): 'F32' | 'BF16';
  /** The tokenizer files a generated model folder gets (tokenizer.json, tokenizer_config.json), where devices need one. */
  tokenizerFiles?(): { json: Record<string, unknown>; config: Record<string, unknown> };
  prefixBlocks(ctx: PrefixContext, model: { config: C; params: Params }, tokens: string, cut: number): string;
}
