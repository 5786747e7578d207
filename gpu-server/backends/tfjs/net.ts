/** The server's TF.js model for a family, by model_type: the one place that picks TfGPT2 or TfLlama. */
import type { Model, ModelType } from '../../../core/model/family.ts';
import type { GPT2Model } from '../../../core/model/gpt2/weights.ts';
import type { LlamaModel } from '../../../core/model/llama/weights.ts';
import { TfGPT2 } from './gpt2.ts';
import { TfLlama } from './llama.ts';

export type ServerNet = TfGPT2 | TfLlama;

interface NetOptions {
  firstBlock?: number;
}

const NETS = {
  gpt2: (model: GPT2Model, o: NetOptions) => new TfGPT2(model, o),
  llama: (model: LlamaModel, o: NetOptions) => new TfLlama(model, o),
} satisfies Record<ModelType, (model: never, o: NetOptions) => ServerNet>;

/** Uploads blocks [firstBlock, n) and the heads; blocks below firstBlock run on the devices. */
export function serverNet(model: Model, { firstBlock = 0 }: NetOptions = {}): ServerNet {
  return (NETS[model.config.modelType] as (model: Model, o: NetOptions) => ServerNet)(model, { firstBlock });
}
