/**
 * Files a run spec may name (the model folder, the evaluation file) must lie inside the server's data folders
 * (SPLITFROZEN_DATA_DIRS; by default the folder the server was started in): an operator token must not be a way to
 * read, or probe for, any file on the server. Symbolic links are followed before the check.
 */
import { realpath } from 'node:fs/promises';
import { isAbsolute, relative, resolve } from 'node:path';

const inside = (path: string, dir: string) => {
  const rel = relative(dir, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
};

/** Throws naming `field` unless `path` lies inside one of `dirs`. Says nothing about whether an outside path exists. */
export async function checkDataPath(path: string, dirs: readonly string[], field: string): Promise<void> {
  const roots = await Promise.all(dirs.map((d) => realpath(d).catch(() => resolve(d))));
  const outside = () => new Error(`${field} ${path} is outside the server's data folders (${roots.join(', ')}): put it there, or set SPLITFROZEN_DATA_DIRS`);
  if (!roots.some((r) => inside(resolve(path), r))) throw outside();
  const real = await realpath(path).catch(() => undefined);
  if (real && !roots.some((r) => inside(real, r))) throw outside();
}
