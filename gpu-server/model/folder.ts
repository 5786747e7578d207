/** Model folders on the local disk (Node): the Hugging Face layout read and written through core/model/files. */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadModel, modelFiles, type ModelSource } from '../../core/model/files.ts';
import type { Model } from '../../core/model/family.ts';

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
