/**
 * Model folders on the local disk (Node): the Hugging Face layout read and written through core/model/files. Reads
 * follow no symbolic link and stay in the folder, and a file that does not parse is named with the line and column,
 * never quoted: whatever a run spec points at is read here, so an error must not become a way to read a file.
 */
import { constants } from 'node:fs';
import { mkdir, open, realpath, rename, writeFile, type FileHandle } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { parseJson } from '../../core/json/parse.ts';
import { loadModel, modelFileChunks, WEIGHTS_INDEX_FILE, type ModelSource } from '../../core/model/files.ts';
import { familyOf, type Model, type ModelConfig } from '../../core/model/family.ts';
import { llamaConfig, TINY_LLAMA } from '../../core/model/llama/config.ts';
import { initLlama } from '../../core/model/llama/init.ts';
import { GPT2Tokenizer } from '../../core/tokenizer/gpt2.ts';
import { TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, tokenizerFromFiles } from '../../core/tokenizer/hf.ts';
import type { Tokenizer } from '../../core/tokenizer/tokenizer.ts';

/** A file of the folder opened for reading: no symbolic link, no path out of the folder; ENOENT as thrown. */
async function openChecked(dir: string, file: string): Promise<FileHandle> {
  // Besides the fixed names, only the index names files (its shards): one with a path in it would lead out of the folder.
  if (file !== basename(file) || file === '..') throw new Error(`${join(dir, WEIGHTS_INDEX_FILE)} names a weights file outside the folder`);
  const path = join(dir, file);
  // O_NOFOLLOW: no symbolic link, even one put there after the run was created.
  return open(path, constants.O_RDONLY | constants.O_NOFOLLOW).catch(async (e: NodeJS.ErrnoException) => {
    if (e.code !== 'ELOOP') throw e;
    throw new Error(
      `${path} is a symbolic link to ${await realpath(path).catch(() => 'nowhere (a loop or a missing file)')}; the server follows none: copy the file into the folder`,
    );
  });
}

/** The bytes of a file of the folder (a Buffer is a Uint8Array: no copy), checked to parse; ENOENT as thrown. */
async function readChecked(dir: string, file: string): Promise<Buffer> {
  const handle = await openChecked(dir, file);
  try {
    const bytes = await handle.readFile();
    checkParses(join(dir, file), bytes);
    return bytes;
  } finally {
    await handle.close();
  }
}

/** Bytes [start, end) of a file of the folder; the start of a safetensors file is checked to parse (its header). */
async function readRange(dir: string, file: string, start: number, end: number): Promise<Uint8Array> {
  const handle = await openChecked(dir, file);
  try {
    // A fresh buffer of its own: aligned for any dtype's view.
    const bytes = new Uint8Array(end - start);
    for (let at = 0; at < bytes.byteLength;) {
      const { bytesRead } = await handle.read(bytes, at, bytes.byteLength - at, start + at);
      if (bytesRead === 0) throw new Error(`${join(dir, file)}: ended at byte ${start + at}, before ${end}`);
      at += bytesRead;
    }
    if (start === 0) checkParses(join(dir, file), bytes);
    return bytes;
  } finally {
    await handle.close();
  }
}

const notFound = (dir: string, file: string) => (e: NodeJS.ErrnoException) => {
  if (e.code !== 'ENOENT') throw e;
  throw new Error(`${join(dir, file)}: not found; a model folder holds config.json and model.safetensors (make one with npm run make-model)`);
};

/** A model folder as a source that reads checkpoints a tensor at a time. */
export function folderSource(dir: string): ModelSource {
  return {
    path: (file) => join(dir, file),
    read: (file) => readChecked(dir, file).catch(notFound(dir, file)),
    ranges: {
      size: (file) =>
        openChecked(dir, file)
          .then(async (handle) => {
            try {
              return (await handle.stat()).size;
            } finally {
              await handle.close();
            }
          })
          .catch(notFound(dir, file)),
      read: (file, start, end) => readRange(dir, file, start, end),
    },
  };
}

export function readModelFolder(dir: string): Promise<Model> {
  return loadModel(folderSource(dir));
}

/** A file of a folder that may not have it: its bytes, or undefined. */
function readIfPresent(dir: string, file: string): Promise<Buffer | undefined> {
  return readChecked(dir, file).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : Promise.reject(e)));
}

/** The folder's tokenizer.json (any family); a GPT-2 folder without one gets GPT-2's BPE through js-tiktoken. */
export async function readTokenizer(dir: string, config: ModelConfig): Promise<Tokenizer> {
  const json = await readIfPresent(dir, TOKENIZER_FILE);
  if (json !== undefined)
    return tokenizerFromFiles(config, json.toString('utf8'), (await readIfPresent(dir, TOKENIZER_CONFIG_FILE))?.toString('utf8'), join(dir, TOKENIZER_FILE));
  if (familyOf(config).builtinTokenizer) return new GPT2Tokenizer();
  throw new Error(`${join(dir, TOKENIZER_FILE)}: not found; a ${familyOf(config).name} folder needs its tokenizer.json (npm run make-model writes one)`);
}

/** Writes each file beside its final name and renames it into place, so a crash never leaves a half-written file. */
export async function writeFileAtomic(path: string, bytes: Uint8Array | string | Iterable<Uint8Array>): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, bytes);
  await rename(tmp, path);
}

/** Writes a model folder a piece at a time (each tensor converted as its turn comes), each file renamed into place. */
export async function writeModelFolder(dir: string, model: Model, options?: Parameters<typeof modelFileChunks>[1]): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const [file, chunks] of modelFileChunks(model, options)) await writeFileAtomic(join(dir, file), chunks);
}

/** The family's tokenizer.json and tokenizer_config.json, for a generated model folder (none for a family whose devices hold theirs). */
export async function writeTokenizer(dir: string, model: ModelConfig): Promise<void> {
  const files = familyOf(model).tokenizerFiles?.();
  if (!files) return;
  const { json, config } = files;
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

/** The JSON a file holds: a .json file's text, a .safetensors file's header; undefined for other files. */
function jsonText(path: string, bytes: Uint8Array): string | undefined {
  if (path.endsWith('.json')) return new TextDecoder().decode(bytes);
  if (!path.endsWith('.safetensors') || bytes.byteLength < 8) return undefined;
  const length = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  // A header longer than the file is core's to report (tensors/safetensors.ts), in words that quote nothing.
  return 8 + length <= bytes.byteLength ? new TextDecoder().decode(bytes.subarray(8, 8 + length)) : undefined;
}

/** Throws naming `path`, line and column where its JSON stops parsing, quoting nothing of it (core/json/parse.ts). */
function checkParses(path: string, bytes: Uint8Array): void {
  const text = jsonText(path, bytes);
  if (text !== undefined) parseJson(text, path.endsWith('.json') ? path : `${path}, its header`);
}

/** npm start's tiny Llama (TINY_LLAMA: Llama 3's vocabulary and tokenizer, random weights), as a model folder. */
export async function writeTinyLlama(dir: string): Promise<void> {
  const model = initLlama(llamaConfig(TINY_LLAMA), { seed: 0 });
  await writeModelFolder(dir, model);
  await writeTokenizer(dir, model.config);
}
