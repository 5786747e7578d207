/** Model folders on the local disk (Node): the Hugging Face layout read and written through core/model/files. */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadModel, modelFiles, type ModelSource } from '../../core/model/files.ts';
import type { Model, ModelConfig } from '../../core/model/family.ts';
import { GPT2Tokenizer } from '../../core/tokenizer/gpt2.ts';
import { TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, tokenizerFromFiles } from '../../core/tokenizer/hf.ts';
import { llama3TokenizerFiles } from '../../core/tokenizer/llama3.ts';
import type { Tokenizer } from '../../core/tokenizer/tokenizer.ts';

export function folderSource(dir: string): ModelSource {
  return {
    path: (file) => join(dir, file),
    read: async (file) => {
      try {
        return await readFile(join(dir, file)); // a Buffer is a Uint8Array: no copy
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        if (err.code === 'ENOENT') {
          throw new Error(`${join(dir, file)}: not found; a model folder holds config.json and model.safetensors (make one with npm run make-model)`);
        }
        throw err;
      }
    },
  };
}

export function readModelFolder(dir: string): Promise<Model> {
  return loadModel(folderSource(dir));
}

/** A file of a folder that may not have it: its bytes, or undefined. */
function readIfPresent(dir: string, file: string): Promise<Buffer | undefined> {
  return readFile(join(dir, file)).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : Promise.reject(e)));
}

/** The folder's tokenizer.json (any family); a GPT-2 folder without one gets GPT-2's BPE through js-tiktoken. */
export async function readTokenizer(dir: string, config: ModelConfig): Promise<Tokenizer> {
  const json = await readIfPresent(dir, TOKENIZER_FILE);
  if (json !== undefined) return tokenizerFromFiles(config, json.toString('utf8'), (await readIfPresent(dir, TOKENIZER_CONFIG_FILE))?.toString('utf8'), join(dir, TOKENIZER_FILE));
  if (config.modelType === 'gpt2') return new GPT2Tokenizer();
  throw new Error(`${join(dir, TOKENIZER_FILE)}: not found; a ${config.modelType} folder needs its tokenizer.json (npm run make-model writes one)`);
}

/** Writes each file beside its final name and renames it into place, so a crash never leaves a half-written file. */
export async function writeFileAtomic(path: string, bytes: Uint8Array | string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, bytes);
  await rename(tmp, path);
}

export async function writeModelFolder(dir: string, model: Model, options?: Parameters<typeof modelFiles>[1]): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const [file, bytes] of modelFiles(model, options)) await writeFileAtomic(join(dir, file), bytes);
}

/** Llama 3's tokenizer.json and tokenizer_config.json, for a generated Llama folder. */
export async function writeLlama3Tokenizer(dir: string): Promise<void> {
  const { json, config } = llama3TokenizerFiles();
  await writeFileAtomic(join(dir, TOKENIZER_FILE), JSON.stringify(json));
  await writeFileAtomic(join(dir, TOKENIZER_CONFIG_FILE), JSON.stringify(config, null, 2) + '\n');
}

/** A folder's tokenizer files copied to another (the merged weights of a model keep its tokenizer); none is fine. */
export async function copyTokenizer(from: string, to: string): Promise<void> {
  for (const file of [TOKENIZER_FILE, TOKENIZER_CONFIG_FILE]) {
    const bytes = await readIfPresent(from, file);
    if (bytes) await writeFileAtomic(join(to, file), bytes);
  }
}
