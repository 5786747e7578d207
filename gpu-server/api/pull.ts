/**
 * What `npm run cli -- pull` does with a run's outputs: the PEFT adapter of a round into a folder, and the base model
 * with it merged in. Shared by the CLI and the end-to-end scripts.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseJson } from '../../core/json/parse.ts';
import { familyOf, type Model } from '../../core/model/family.ts';
import { CONFIG_FILE, type WeightsDType } from '../../core/model/files.ts';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, mergeAdapter, parseAdapter } from '../../core/peft/adapter.ts';
import { copyTokenizer, folderSource, readModelFolder, writeModelFolder } from '../model-folder/folder.ts';
import type { RunSpec } from '../runs/spec.ts';
import type { ServerClient } from './client.ts';

export type AdapterFiles = Record<string, Uint8Array>;

/** Downloads the adapter's two files of `round` into `out`. */
export async function pullAdapter(client: ServerClient, runId: string, round: number | 'latest', out: string): Promise<AdapterFiles> {
  const files: AdapterFiles = {};
  await mkdir(out, { recursive: true });
  for (const file of [ADAPTER_CONFIG, ADAPTER_WEIGHTS]) {
    files[file] = await client.adapterFile(runId, round, file);
    await writeFile(join(out, file), files[file]);
  }
  return files;
}

/** Half-precision `torch_dtype`s of config.json, as safetensors names them; any other value is written as F32. */
const HALF_DTYPES: Record<string, WeightsDType> = { bfloat16: 'BF16', float16: 'F16' };

/**
 * The dtype the base's config.json names: what transformers loads with `torch_dtype="auto"` and what save_pretrained
 * writes again after merge_and_unload, so a BF16 base gives a BF16 merged model (half the bytes of F32). Newer
 * transformers write the key as `dtype`, older ones as `torch_dtype`.
 */
async function baseDtype(modelDir: string): Promise<WeightsDType> {
  const source = folderSource(modelDir);
  const config = parseJson(new TextDecoder().decode(await source.read(CONFIG_FILE)), source.path(CONFIG_FILE)) as { dtype?: unknown; torch_dtype?: unknown };
  const named = config.dtype ?? config.torch_dtype;
  return typeof named === 'string' && Object.hasOwn(HALF_DTYPES, named) ? HALF_DTYPES[named] : 'F32';
}

/**
 * Writes `out`/merged: the base model in `modelDir` with the adapter merged in, and its tokenizer. Needs no server:
 * `task` is the run's (a classification run trained a head for its labels; a generation run keeps the LM head). The
 * merged weights keep the base's dtype.
 * Returns the folder and the merged model's Hugging Face class.
 */
export async function writeMerged(
  modelDir: string,
  files: AdapterFiles,
  task: Pick<RunSpec['task'], 'kind' | 'labels'>,
  out: string,
): Promise<{ dir: string; kind: string }> {
  const base = await readModelFolder(modelDir);
  const model = (task.kind === 'generation' ? base : { ...base, config: { ...base.config, numLabels: task.labels.length } }) as Model;
  const merged = mergeAdapter(model, parseAdapter(files, model.config, out));
  const dir = join(out, 'merged');
  await writeModelFolder(dir, merged, { dtype: await baseDtype(modelDir) });
  await copyTokenizer(modelDir, dir);
  return { dir, kind: familyOf(merged.config).merged };
}
