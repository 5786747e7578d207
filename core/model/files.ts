/**
 * A model folder in the Hugging Face layout (`config.json` + `model.safetensors`, or shards listed in
 * `model.safetensors.index.json` as larger checkpoints publish them), as bytes; runtime-neutral.
 */
import { pythonJson } from '../json/python.ts';
import { DTYPES } from '../tensors/dtype.ts';
import {
  concatBytes,
  HEADER_PREFIX_BYTES,
  headerLength,
  parseSafetensors,
  parseSafetensorsHeader,
  safetensorsChunks,
  typedView,
  type PendingTensor,
} from '../tensors/safetensors.ts';
import { fromFloat32, numel } from '../tensors/tensor.ts';
import { familyOf, modelConfigToJson, paramLayout, parseModelConfig, type Model } from './family.ts';
import { paramsFromTensors, paramsToTensors, type StoredTensor } from './params.ts';

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';
export const WEIGHTS_INDEX_FILE = 'model.safetensors.index.json';

/** Where model files come from: a folder, a bucket, a fetch. `path` only names files in errors. */
export interface ModelSource {
  read(file: string): Promise<Uint8Array>;
  path(file: string): string;
  /**
   * Where the source can read part of a file (a folder): its size and bytes [start, end). A checkpoint is then read
   * a tensor at a time, however large its files (a 5 GB shard is more than one buffer holds).
   */
  ranges?: { size(file: string): Promise<number>; read(file: string, start: number, end: number): Promise<Uint8Array> };
}

/**
 * A safetensors file of the source, found: its length (where the source reads ranges) or its bytes, which is what
 * fails for a missing file; then its tensors, each read when asked.
 */
async function weightsFile(source: ModelSource, file: string): Promise<() => Promise<Map<string, StoredTensor>>> {
  const path = source.path(file);
  if (!source.ranges) {
    const bytes = await source.read(file);
    return async () => {
      const { tensors } = parseSafetensors(bytes, path);
      return new Map([...tensors].map(([name, t]) => [name, { dtype: t.dtype, shape: t.shape, read: async () => t.data }]));
    };
  }
  const { size, read } = source.ranges;
  const fileLength = await size(file);
  return async () => {
    const length = headerLength(await read(file, 0, Math.min(fileLength, HEADER_PREFIX_BYTES)), path);
    const { entries, dataStart } = parseSafetensorsHeader(await read(file, 0, Math.min(fileLength, HEADER_PREFIX_BYTES + length)), fileLength, path);
    return new Map(
      entries.map((e) => [
        e.name,
        { dtype: e.dtype, shape: e.shape, read: async () => typedView(await read(file, dataStart + e.begin, dataStart + e.end), 0, e.dtype, numel(e.shape)) },
      ]),
    );
  };
}

/** The checkpoint's tensors, from one file or from the shards its index names. */
async function readTensors(source: ModelSource): Promise<{ tensors: Map<string, StoredTensor>; file: string }> {
  let single: () => Promise<Map<string, StoredTensor>>;
  try {
    single = await weightsFile(source, WEIGHTS_FILE);
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
    const tensors = new Map<string, StoredTensor>();
    for (const shard of new Set(Object.values(weightMap as Record<string, string>))) {
      for (const [name, t] of await (await weightsFile(source, shard))()) tensors.set(name, t);
    }
    return { tensors, file: indexPath };
  }
  return { tensors: await single(), file: source.path(WEIGHTS_FILE) };
}

export async function loadModel(source: ModelSource): Promise<Model> {
  const config = parseModelConfig(new TextDecoder().decode(await source.read(CONFIG_FILE)), source.path(CONFIG_FILE));
  const { tensors, file } = await readTensors(source);
  return { config, params: await paramsFromTensors(paramLayout(config), tensors, file) } as Model;
}

/** save_pretrained's default `max_shard_size` ("5GB"): a checkpoint larger than this is written as shards and an index. */
export const MAX_SHARD_BYTES = 5_000_000_000;

export type WeightsDType = 'F32' | 'F16' | 'BF16';

/** config.json's `torch_dtype` for each. */
const TORCH_DTYPES: Record<WeightsDType, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

/**
 * The folder's files one at a time, each as pieces made when they are reached: config.json, then model.safetensors or
 * its shards and index, as transformers' save_pretrained writes them (shards of at most `maxShardBytes`, split as
 * huggingface_hub splits a state dict). Each tensor is converted to `dtype` only when its turn comes, so writing
 * holds one converted tensor at a time, and no file is ever one buffer (a 5 GB shard is more than one can hold).
 */
export function* modelFileChunks(
  model: Model,
  { dtype = 'F32', maxShardBytes = MAX_SHARD_BYTES }: { dtype?: WeightsDType; maxShardBytes?: number } = {},
): Generator<[string, Iterable<Uint8Array>]> {
  const family = familyOf(model.config);
  const config = { ...modelConfigToJson(model.config), torch_dtype: TORCH_DTYPES[dtype] };
  yield [CONFIG_FILE, [utf8(pythonJson(config, new Set(family.floatFields)) + '\n')]];
  const tensors = [...paramsToTensors(paramLayout(model.config), model.params)].map(
    ([name, t]) => [name, { dtype, shape: t.shape, data: () => fromFloat32(t.data as Float32Array, t.shape, dtype).data }] as const,
  );
  const sizeOf = (t: PendingTensor) => numel(t.shape) * DTYPES[t.dtype].bytes;
  const shards: Array<Array<readonly [string, PendingTensor]>> = [];
  let current: Array<readonly [string, PendingTensor]> = [];
  let size = 0;
  for (const entry of tensors) {
    const bytes = sizeOf(entry[1]);
    // A tensor larger than a shard gets one of its own; otherwise one that would overflow starts the next.
    if (bytes > maxShardBytes) {
      shards.push([entry]);
      continue;
    }
    if (size + bytes > maxShardBytes) {
      shards.push(current);
      current = [];
      size = 0;
    }
    current.push(entry);
    size += bytes;
  }
  if (current.length > 0 || shards.length === 0) shards.push(current);
  if (shards.length === 1) {
    yield [WEIGHTS_FILE, safetensorsChunks(shards[0]!, { format: 'pt' })];
    return;
  }
  const name = (i: number) => `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
  const weightMap: Record<string, string> = {};
  for (const [i, shard] of shards.entries()) {
    for (const [tensor] of shard) weightMap[tensor] = name(i);
    yield [name(i), safetensorsChunks(shard, { format: 'pt' })];
  }
  const totalSize = tensors.reduce((sum, [, t]) => sum + sizeOf(t), 0);
  yield [WEIGHTS_INDEX_FILE, [utf8(pythonJson({ metadata: { total_size: totalSize }, weight_map: weightMap }) + '\n')]];
}

/** The same files, each as one array of bytes: for models that fit in memory (tests, small folders). */
export function* modelFiles(model: Model, options?: Parameters<typeof modelFileChunks>[1]): Generator<[string, Uint8Array]> {
  for (const [file, chunks] of modelFileChunks(model, options)) yield [file, concatBytes(chunks)];
}

const utf8 = (s: string) => new TextEncoder().encode(s);
