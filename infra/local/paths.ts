/** Project-local scratch space: everything the local system writes lives under .local/ (git-ignored). */
import { mkdir, mkdtemp } from 'node:fs/promises';
import { resolve } from 'node:path';

export const LOCAL_DIR = resolve('.local');

/** A new, empty folder under .local/ (created on a fresh clone too). */
export async function localTempDir(prefix: string): Promise<string> {
  await mkdir(LOCAL_DIR, { recursive: true });
  return mkdtemp(resolve(LOCAL_DIR, `${prefix}-`));
}
