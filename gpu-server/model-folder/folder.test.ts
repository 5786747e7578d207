import { cp, mkdir, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gpt2Config } from '../../core/model/gpt2/config.ts';
import { initModel } from '../../core/model/gpt2/init.ts';
import { localTempDir } from '../../infra/local/paths.ts';
import { readModelFolder, readTokenizer, writeModelFolder } from './folder.ts';

const config = gpt2Config({ nLayer: 1, nEmbd: 8, nHead: 2, nPositions: 16, vocabSize: 32, padTokenId: 31 });
const SECRET = 'root:x:0:0:hunter2';

let dir: string;
/** A fresh copy of a valid model folder, for one test to break. */
let copy: (name: string) => Promise<string>;
beforeAll(async () => {
  dir = await realpath(await localTempDir('test-folder'));
  await writeModelFolder(join(dir, 'model'), initModel(config, { seed: 1 }));
  await writeFile(join(dir, 'secret'), `${SECRET}\n`);
  copy = async (name) => {
    await cp(join(dir, 'model'), join(dir, name), { recursive: true });
    return join(dir, name);
  };
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('reading a model folder', () => {
  it('reads a plain folder', async () => {
    expect((await readModelFolder(join(dir, 'model'))).config.nEmbd).toBe(8);
  });

  it('refuses a symbolic link in the folder, naming it and where it resolves, and quotes nothing of its target', async () => {
    for (const file of ['config.json', 'model.safetensors']) {
      const folder = await copy(`link-${file}`);
      await rm(join(folder, file));
      await symlink(join(dir, 'secret'), join(folder, file));
      const error = await readModelFolder(folder).then(
        () => undefined,
        (e: Error) => e.message,
      );
      expect(error).toBe(`${join(folder, file)} is a symbolic link to ${join(dir, 'secret')}; the server follows none: copy the file into the folder`);
    }
    const folder = await copy('link-tokenizer');
    await symlink(join(dir, 'secret'), join(folder, 'tokenizer.json'));
    await expect(readTokenizer(folder, config)).rejects.toThrow(`${join(folder, 'tokenizer.json')} is a symbolic link to ${join(dir, 'secret')}`);
  });

  it('names the file, line and column of JSON that does not parse, and never quotes it', async () => {
    const folder = await copy('bad-json');
    await writeFile(join(folder, 'config.json'), `{\n  "model_type": "gpt2",\n  "n_embd": ${SECRET}\n}\n`);
    await expect(readModelFolder(folder)).rejects.toThrow(new Error(`${join(folder, 'config.json')}: not valid JSON at line 3, column 13 (InvalidSymbol)`));
    await writeFile(join(folder, 'tokenizer.json'), `{"model": {"vocab": {"a": 0, ${SECRET}}}}`);
    await expect(readTokenizer(folder, config)).rejects.toThrow(
      new Error(`${join(folder, 'tokenizer.json')}: not valid JSON at line 1, column 30 (InvalidSymbol)`),
    );
  });

  it("names where a safetensors header's JSON breaks, and never quotes it", async () => {
    const folder = await copy('bad-header');
    const header = new TextEncoder().encode(`{"wte.weight": ${SECRET}}`);
    const bytes = new Uint8Array(8 + header.byteLength);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(header.byteLength), true);
    bytes.set(header, 8);
    await writeFile(join(folder, 'model.safetensors'), bytes);
    await expect(readModelFolder(folder)).rejects.toThrow(
      new Error(`${join(folder, 'model.safetensors')}, its header: not valid JSON at line 1, column 16 (InvalidSymbol)`),
    );
  });

  it('refuses an index that names a weights file outside the folder', async () => {
    const folder = await copy('bad-index');
    await rm(join(folder, 'model.safetensors'));
    await mkdir(join(dir, 'outside'), { recursive: true });
    await cp(join(dir, 'model', 'model.safetensors'), join(dir, 'outside', 'model.safetensors'));
    await writeFile(join(folder, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'wte.weight': '../outside/model.safetensors' } }));
    await expect(readModelFolder(folder)).rejects.toThrow(new Error(`${join(folder, 'model.safetensors.index.json')} names a weights file outside the folder`));
  });
});
