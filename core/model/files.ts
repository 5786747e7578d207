/**
 * A model folder in the Hugging Face layout (`config.json` + `model.safetensors`, or shards listed in
 * `model.safetensors.index.json` as larger checkpoints publish them), as bytes; runtime-neutral.
 */
import { parseSafetensors, serializeSafetensors } from '../tensors/safetensors.ts';
import { byteLength, fromFloat32, type Tensor } from '../tensors/tensor.ts';
import { modelConfigToJson, paramLayout, parseModelConfig, type Model } from './family.ts';
import { paramsFromTensors, paramsToTensors } from './params.ts';

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';
export const WEIGHTS_INDEX_FILE = 'model.safetensors.index.json';

/** Where model files come from: a folder, a bucket, a fetch. `path` only names files in errors. */
export interface ModelSource {
  read(file: string): Promise<Uint8Array>;
  path(file: string): string;
}

/** The checkpoint's tensors, from one file or from the shards its index names. */
async function readTensors(source: ModelSource): Promise<{ tensors: Map<string, Tensor>; file: string }> {
  let single: Uint8Array;
  try {
    single = await source.read(WEIGHTS_FILE);
  } catch (missing) {
    const index = await source.read(WEIGHTS_INDEX_FILE).catch(() => Promise.reject(missing));
    const indexPath = source.path(WEIGHTS_INDEX_FILE);
    let weightMap: unknown;
    try {
      weightMap = JSON.parse(new TextDecoder().decode(index)).weight_map;
    } catch (e) {
      throw new Error(`${indexPath}: not valid JSON (${(e as Error).message})`);
    }
    if (!weightMap || typeof weightMap !== 'object') throw new Error(`${indexPath}: no 'weight_map' object`);
    const tensors = new Map<string, Tensor>();
    for (const shard of new Set(Object.values(weightMap as Record<string, string>))) {
      for (const [name, t] of parseSafetensors(await source.read(shard), source.path(shard)).tensors) tensors.set(name, t);
    }
    return { tensors, file: indexPath };
  }
  const file = source.path(WEIGHTS_FILE);
  return { tensors: parseSafetensors(single, file).tensors, file };
}

export async function loadModel(source: ModelSource): Promise<Model> {
  const config = parseModelConfig(new TextDecoder().decode(await source.read(CONFIG_FILE)), source.path(CONFIG_FILE));
  const { tensors, file } = await readTensors(source);
  return { config, params: paramsFromTensors(paramLayout(config), tensors, file) } as Model;
}

/** Checkpoints larger than this are written as shards with an index, as transformers' save_pretrained does. */
export const SHARD_BYTES = 2 ** 31;

/**
 * The folder's files one at a time (a Llama-3.2-3B checkpoint does not fit one buffer): config.json, then
 * model.safetensors or its shards and index. `dtype` BF16 writes weights as Meta publishes them.
 */
export function* modelFiles(
  model: Model,
  { dtype = 'F32', shardBytes = SHARD_BYTES }: { dtype?: 'F32' | 'BF16'; shardBytes?: number } = {},
): Generator<[string, Uint8Array]> {
  yield [CONFIG_FILE, new TextEncoder().encode(JSON.stringify(modelConfigToJson(model.config), null, 2) + '\n')];
  const tensors = [...paramsToTensors(paramLayout(model.config), model.params)].map(
    ([name, t]) => [name, fromFloat32(t.data as Float32Array, t.shape, dtype)] as const,
  );
  const shards: Array<Array<readonly [string, Tensor]>> = [[]];
  let size = 0;
  for (const entry of tensors) {
    const bytes = byteLength(entry[1]);
    if (size > 0 && size + bytes > shardBytes) {
      shards.push([]);
      size = 0;
    }
    shards.at(-1)!.push(entry);
    size += bytes;
  }
  if (shards.length === 1) {
    yield [WEIGHTS_FILE, serializeSafetensors(new Map(shards[0]), { format: 'pt' })];
    return;
  }
  const name = (i: number) => `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
  const weightMap: Record<string, string> = {};
  for (const [i, shard] of shards.entries()) {
    for (const [tensor] of shard) weightMap[tensor] = name(i);
    yield [name(i), serializeSafetensors(new Map(shard), { format: 'pt' })];
  }
  const totalSize = tensors.reduce((sum, [, t]) => sum + byteLength(t), 0);
  yield [WEIGHTS_INDEX_FILE, new TextEncoder().encode(JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2) + '\n')];
}
