import { mkdir, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localTempDir } from '../../infra/local/paths.ts';
import { checkDataPath } from './data-dirs.ts';

let dir: string;
let data: string;
let elsewhere: string;
beforeAll(async () => {
  // Real, so the paths the checks print are the ones expected here.
  dir = await realpath(await localTempDir('test-data-dirs'));
  [data, elsewhere] = [join(dir, 'data'), join(dir, 'elsewhere')];
  await mkdir(join(data, 'gpt2'), { recursive: true });
  await mkdir(join(elsewhere, 'model'), { recursive: true });
  await writeFile(join(elsewhere, 'secret.jsonl'), 'private\n');
  await writeFile(join(data, 'eval.jsonl'), '{}\n');
  await symlink(join(elsewhere, 'model'), join(data, 'linked-model'));
  await symlink(elsewhere, join(data, 'linked-dir'));
  await symlink(join(elsewhere, 'secret.jsonl'), join(data, 'linked-eval.jsonl'));
  await symlink(join(data, 'gpt2'), join(data, 'inner-link'));
  await symlink(data, join(dir, 'data-link'));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('data paths a run spec names', () => {
  it('accepts files inside a data folder, also through a data folder that is itself a link', async () => {
    await checkDataPath(join(data, 'gpt2'), [data], 'model');
    await checkDataPath(join(data, 'eval.jsonl'), [data], 'task.eval.path');
    await checkDataPath(join(data, 'not-yet'), [data], 'model');
    await checkDataPath(join(dir, 'data-link', 'gpt2'), [join(dir, 'data-link')], 'model');
    await checkDataPath(join(data, 'gpt2'), [join(dir, 'data-link')], 'model');
  });

  it('refuses a symbolic link anywhere below a data folder, naming the path and where it resolves', async () => {
    const refused = (path: string, field = 'model') => expect(checkDataPath(path, [data], field)).rejects.toThrow(`${field} ${path} resolves to `);
    await refused(join(data, 'linked-model'));
    await expect(checkDataPath(join(data, 'linked-model'), [data], 'model')).rejects.toThrow(`resolves to ${join(elsewhere, 'model')} through a symbolic link`);
    await refused(join(data, 'linked-eval.jsonl'), 'task.eval.path');
    await refused(join(data, 'linked-dir', 'model'));
    // Even a link that stays inside: it could be pointed elsewhere once checked.
    await refused(join(data, 'inner-link'));
  });

  it('says the same of a path below a link whether or not it exists', async () => {
    const message = (path: string) =>
      checkDataPath(path, [data], 'model').then(
        () => 'accepted',
        (e: Error) => e.message.replace(path, 'PATH'),
      );
    const exists = await message(join(data, 'linked-dir', 'secret.jsonl'));
    expect(exists).toBe(
      `model PATH resolves to ${join(elsewhere, 'secret.jsonl')} through a symbolic link, and the server follows none in its data folders: put the files themselves there`,
    );
    expect((await message(join(data, 'linked-dir', 'missing.jsonl'))).replace('missing', 'secret')).toBe(exists);
  });

  it('refuses a path outside every data folder, as before', async () => {
    await expect(checkDataPath(join(elsewhere, 'model'), [data], 'model')).rejects.toThrow(/^model .* is outside the server's data folders/);
    await expect(checkDataPath('/etc/passwd', [data], 'task.eval.path')).rejects.toThrow(/^task.eval.path \/etc\/passwd is outside/);
  });
});
