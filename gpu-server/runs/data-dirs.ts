/**
 * Files a run spec may name (the model folder, the evaluation file) must lie inside the server's data folders
 * (SPLITFROZEN_DATA_DIRS; by default the folder the server was started in): an operator token must not be a way to
 * read, or probe for, any file on the server. No symbolic link below a data folder is followed: one that points
 * inside today can point anywhere once the check is done. (The data folders themselves may be links.)
 */
import { realpath } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';

const inside = (path: string, dir: string) => {
  const rel = relative(dir, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
};

/** The real path of `path`, or of its nearest existing folder with the rest joined on: no probing for what exists. */
async function realOrAncestor(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if ((code !== 'ENOENT' && code !== 'ENOTDIR') || dirname(path) === path) throw e;
    return join(await realOrAncestor(dirname(path)), basename(path));
  }
}

/**
 * Throws naming `field` unless `path` lies inside one of `dirs` with no symbolic link on the way. Says nothing about
 * whether an outside path exists.
 */
export async function checkDataPath(path: string, dirs: readonly string[], field: string): Promise<void> {
  const roots = await Promise.all(dirs.map(async (d) => ({ given: resolve(d), real: await realpath(d).catch(() => resolve(d)) })));
  const abs = resolve(path);
  const root = roots.find((r) => inside(abs, r.given)) ?? roots.find((r) => inside(abs, r.real));
  if (!root)
    throw new Error(
      `${field} ${path} is outside the server's data folders (${roots.map((r) => r.real).join(', ')}): put it there, or set SPLITFROZEN_DATA_DIRS`,
    );
  const real = await realOrAncestor(abs);
  const plain = join(root.real, relative(inside(abs, root.given) ? root.given : root.real, abs));
  if (real !== plain)
    throw new Error(
      `${field} ${path} resolves to ${real} through a symbolic link, and the server follows none in its data folders: put the files themselves there`,
    );
}
