/**
 * What `npm run cli -- pull` does with a run's outputs: the PEFT adapter of a round into a folder, and the base model
 * with it merged in. Shared by the CLI and the end-to-end scripts.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { familyOf, type Model } from '../../core/model/family.ts';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, mergeAdapter, parseAdapter } from '../../core/peft/adapter.ts';
import { copyTokenizer, readModelFolder, writeModelFolder } from '../model-folder/folder.ts';
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

/**
 * Writes `out`/merged: the base model in `modelDir` with the adapter merged in, and its tokenizer. Needs no server:
 * `task` is the run's (a classification run trained a head for its labels; a generation run keeps the LM head).
 * Returns the folder and the merged model's Hugging Face class.
 */
export async function writeMerged(modelDir: string, files: AdapterFiles, task: RunSpec['task'], out: string): Promise<{ dir: string; kind: string }> {
  const base = await readModelFolder(modelDir);
  const model = (task.kind === 'generation' ? base : { ...base, config: { ...base.config, numLabels: task.labels.length } }) as Model;
  const merged = mergeAdapter(model, parseAdapter(files, model.config, out));
  const dir = join(out, 'merged');
  await writeModelFolder(dir, merged);
  await copyTokenizer(modelDir, dir);
  return { dir, kind: familyOf(merged.config).merged };
}
