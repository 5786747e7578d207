/** The server's model for a family: the one place that picks TfGPT2 or TfLlama; everything above takes ServerNet. */
import type { Model } from '../../core/model/family.ts';
import { TfGPT2 } from './gpt2.ts';
import { TfLlama } from './llama.ts';

export type ServerNet = TfGPT2 | TfLlama;

/** Uploads blocks [firstBlock, n) and the heads; blocks below firstBlock run on the devices. */
export function serverNet(model: Model, { firstBlock = 0 }: { firstBlock?: number } = {}): ServerNet {
  return model.config.modelType === 'llama'
    ? new TfLlama({ ...model, config: model.config }, { firstBlock })
    : new TfGPT2({ ...model, config: model.config }, { firstBlock });
}
