/**
 * Test data that lives outside the repository, in the `shared/` folder beside it (real GLUE/GSM8K files and
 * Hugging Face's GPT-2 tokenizer files: too large, and not ours, to commit). A test that needs it asks here:
 * on a machine without the folder its tests are skipped with one line naming it; under CI (`CI=true`) a missing
 * folder fails the run instead, so CI can never go green by skipping them.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const SHARED = new URL('../../shared/', import.meta.url);

export interface SharedFolder {
  /** The folder as a URL ending in '/', for `new URL(file, folder.url)`. */
  url: URL;
  /** Its path on disk, ending in '/'. */
  path: string;
  /** True where the folder is missing (and this is not CI): pass to `describe.skipIf`. */
  missing: boolean;
}

/** `name`: a folder under shared/, e.g. 'datasets' or 'tokenizers/gpt2'. */
export function sharedFolder(name: string): SharedFolder {
  const url = new URL(`${name.replace(/\/?$/, '/')}`, SHARED);
  const path = fileURLToPath(url);
  if (existsSync(path)) return { url, path, missing: false };
  const shown = `../shared/${name}`;
  if (process.env.CI === 'true') {
    throw new Error(`${shown} is missing (looked for ${path}): CI needs the shared data folder beside the repository`);
  }
  console.warn(`skipping tests that need ${shown}: not found at ${path}`);
  return { url, path, missing: true };
}
