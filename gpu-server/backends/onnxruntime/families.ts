/** Each family's blocks on onnxruntime, by model_type: the one place that picks them. */
import type { Model, ModelType } from '../../../core/model/family.ts';
import type { BlockFamily } from './block-family.ts';
import { gpt2BlockFamily } from './gpt2-family.ts';
import { llamaBlockFamily } from './llama-family.ts';
import type { LoraGraphSpec } from '../../../core/onnx/lora-graph.ts';

export type { BlockFamily } from './block-family.ts';

const FAMILIES = { gpt2: gpt2BlockFamily, llama: llamaBlockFamily } satisfies Record<ModelType, (model: never, lora: LoraGraphSpec) => BlockFamily>;

export function blockFamily(model: Model, lora: LoraGraphSpec): BlockFamily {
  return (FAMILIES[model.config.modelType] as (model: Model, lora: LoraGraphSpec) => BlockFamily)(model, lora);
}
