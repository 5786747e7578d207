/** A model folder in the Hugging Face layout (`config.json` + `model.safetensors`), as bytes; runtime-neutral. */
import { configToJson, parseConfig } from './config.ts';
import { parseSafetensors, serializeSafetensors } from '../tensors/safetensors.ts';
import { paramsFromTensors, paramsToTensors, type GPT2Model } from './weights.ts';

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';

/** Where model files come from: a folder, a bucket, a fetch. `path` only names files in errors. */
export interface ModelSource {
  read(file: string): Promise<Uint8Array>;
  path(file: string): string;
}

export async function loadModel(source: ModelSource): Promise<GPT2Model> {
  const config = parseConfig(new TextDecoder().decode(await source.read(CONFIG_FILE)), source.path(CONFIG_FILE));
  const file = source.path(WEIGHTS_FILE);
  const { tensors } = parseSafetensors(await source.read(WEIGHTS_FILE), file);
  return { config, params: paramsFromTensors(config, tensors, file) };
}

export function modelFiles(model: GPT2Model): Record<string, Uint8Array> {
  return {
    [CONFIG_FILE]: new TextEncoder().encode(JSON.stringify(configToJson(model.config), null, 2) + '\n'),
    [WEIGHTS_FILE]: serializeSafetensors(paramsToTensors(model), { format: 'pt' }),
  };
}
