import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { blockPath, linearInOut } from '../../core/model/family.ts';
import { adapterFiles, type AdapterWeights } from '../../core/peft/adapter.ts';
import { parseSafetensors } from '../../core/tensors/safetensors.ts';
import { tinyLlama, TINY_LLAMA } from '../../tests/fixtures.ts';
import { readModelFolder, writeModelFolder } from '../model-folder/folder.ts';
import { writeMerged } from './pull.ts';

const work = await mkdtemp(join(tmpdir(), 'pull-'));
afterAll(() => rm(work, { recursive: true, force: true }));

/** A rank-2 adapter on every block's q_proj, large enough to move the merged weights by far more than BF16's step. */
function qAdapter(): AdapterWeights {
  const [inp, out] = linearInOut(TINY_LLAMA, 'self_attn.q_proj');
  const layers = [0, 1, 2];
  const keys = layers.map((l) => `${blockPath(TINY_LLAMA, l)}.self_attn.q_proj`);
  const a = new Map(keys.map((k) => [k, Float32Array.from({ length: inp * 2 }, (_, i) => ((i % 7) - 3) / 4)]));
  const b = new Map(keys.map((k) => [k, Float32Array.from({ length: 2 * out }, (_, i) => ((i % 5) - 2) / 2)]));
  return { rank: 2, alpha: 4, dropout: 0, targets: ['self_attn.q_proj'], layers, a, b };
}

const generation = { kind: 'generation' as const, labels: [] };

describe('writeMerged', () => {
  it("reads the base's dtype under newer transformers' key, `dtype`", async () => {
    const base = join(work, 'base-dtype-key');
    await writeModelFolder(base, tinyLlama(), { dtype: 'BF16' });
    const config = JSON.parse(await readFile(join(base, 'config.json'), 'utf8'));
    const { torch_dtype: dtype, ...rest } = config;
    await writeFile(join(base, 'config.json'), JSON.stringify({ ...rest, dtype }));
    const { dir } = await writeMerged(base, adapterFiles(qAdapter(), TINY_LLAMA, base), generation, join(work, 'out-dtype-key'));
    expect(JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16');
  });

  it.each(['BF16', 'F16', 'F32'] as const)('writes the merged model in its %s base dtype, with the adapter merged in', async (dtype) => {
    const base = join(work, `base-${dtype}`);
    await writeModelFolder(base, tinyLlama(), { dtype });
    const files = adapterFiles(qAdapter(), TINY_LLAMA, base);
    const { dir } = await writeMerged(base, files, generation, join(work, `out-${dtype}`));

    const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
    expect(config.torch_dtype).toBe({ BF16: 'bfloat16', F16: 'float16', F32: 'float32' }[dtype]);
    const { tensors } = parseSafetensors(await readFile(join(dir, 'model.safetensors')), 'merged');
    expect(new Set([...tensors.values()].map((t) => t.dtype))).toEqual(new Set([dtype]));

    // Merged: q_proj moved by the adapter, within the dtype's rounding of base + (alpha / r) A B (PEFT's merge).
    const [before, after] = [await readModelFolder(base), await readModelFolder(dir)];
    const name = `${blockPath(TINY_LLAMA, 1)}.self_attn.q_proj.weight`;
    const [inp, out] = linearInOut(TINY_LLAMA, 'self_attn.q_proj');
    const w = qAdapter();
    const key = `${blockPath(TINY_LLAMA, 1)}.self_attn.q_proj`;
    const [A, B] = [w.a.get(key)!, w.b.get(key)!];
    const relStep = { BF16: 2 ** -8, F16: 2 ** -11, F32: 2 ** -23 }[dtype];
    let moved = 0;
    // Hugging Face's nn.Linear weight is [out, in]; A is [in, r], B is [r, out].
    for (let o = 0; o < out; o++) {
      for (let i = 0; i < inp; i++) {
        const delta = 2 * (A[i * 2] * B[o] + A[i * 2 + 1] * B[out + o]);
        const expected = before.params.get(name)![o * inp + i] + delta;
        expect(Math.abs(after.params.get(name)![o * inp + i] - expected)).toBeLessThanOrEqual(Math.abs(expected) * relStep + 1e-6);
        moved = Math.max(moved, Math.abs(delta));
      }
    }
    expect(moved).toBeGreaterThan(0.5);
  });
});
