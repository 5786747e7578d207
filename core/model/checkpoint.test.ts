/**
 * Checkpoints as transformers' save_pretrained writes them, pinned to golden files written in Python
 * (llama/golden_files.py: json.dumps as transformers calls it, shards split as huggingface_hub splits a state dict).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { pythonFloat, pythonJson } from '../json/python.ts';
import { fromBfloat16Array, fromHalfArray, toBfloat16Array, toHalfArray } from '../tensors/dtype.ts';
import { parseSafetensors } from '../tensors/safetensors.ts';
import { makeModel } from './family.ts';
import { CONFIG_FILE, loadModel, modelFiles, WEIGHTS_FILE, WEIGHTS_INDEX_FILE, type ModelSource } from './files.ts';

const golden = JSON.parse(readFileSync(new URL('./llama/golden-files.json', import.meta.url), 'utf8')) as {
  shape: Record<string, number>;
  maxShardBytes: number;
  config: string;
  index: string;
};
const model = makeModel('llama', golden.shape);
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const memory = (files: Record<string, Uint8Array>): ModelSource => ({
  path: (file) => `mem/${file}`,
  read: async (file) => files[file] ?? Promise.reject(new Error(`mem/${file}: not found`)),
});

describe('checkpoints as save_pretrained writes them', () => {
  const files = Object.fromEntries(modelFiles(model, { dtype: 'BF16', maxShardBytes: golden.maxShardBytes }));

  it("config.json: keys sorted, floats as floats, torch_dtype the weights' own", () => {
    expect(text(files[CONFIG_FILE]!)).toBe(golden.config);
  });

  it('shards split as huggingface_hub splits them, and the index that names them', () => {
    expect(text(files[WEIGHTS_INDEX_FILE]!)).toBe(golden.index);
    expect(files[WEIGHTS_FILE]).toBeUndefined();
    const { weight_map: weightMap } = JSON.parse(golden.index) as { weight_map: Record<string, string> };
    for (const shard of new Set(Object.values(weightMap))) {
      const { tensors, metadata } = parseSafetensors(files[shard]!, shard);
      expect(metadata).toEqual({ format: 'pt' });
      expect([...tensors.keys()].sort()).toEqual(Object.keys(weightMap).filter((name) => weightMap[name] === shard));
      for (const t of tensors.values()) expect(t.dtype).toBe('BF16');
    }
  });

  it('reads the shards back: every weight as bfloat16 rounds it', async () => {
    const loaded = await loadModel(memory(files));
    for (const [name, p] of model.params) expect(loaded.params.get(name)).toEqual(fromBfloat16Array(toBfloat16Array(p)));
  });

  it.each([
    ['F16', 'float16', (p: Float32Array) => fromHalfArray(toHalfArray(p))],
    ['F32', 'float32', (p: Float32Array) => p],
  ] as const)('%s: one model.safetensors under 5 GB, no index, torch_dtype %s, read back', async (dtype, torchDtype, rounded) => {
    const single = Object.fromEntries(modelFiles(model, { dtype }));
    expect(Object.keys(single).sort()).toEqual([CONFIG_FILE, WEIGHTS_FILE]);
    expect(JSON.parse(text(single[CONFIG_FILE]!)).torch_dtype).toBe(torchDtype);
    expect(new Set([...parseSafetensors(single[WEIGHTS_FILE]!).tensors.values()].map((t) => t.dtype))).toEqual(new Set([dtype]));
    const loaded = await loadModel(memory(single));
    for (const [name, p] of model.params) expect(loaded.params.get(name)).toEqual(rounded(p));
  });
});

describe("JSON as Python's json.dumps writes it", () => {
  it('floats as Python prints them (reference: repr in Python 3)', () => {
    // python3 -c "print([repr(v) for v in [1e-5, 500000.0, 32.0, 0.02, 0.0, 1e16, -2.5e-7, 1e-4, 5e-5, 123.456]])"
    const want = ['1e-05', '500000.0', '32.0', '0.02', '0.0', '1e+16', '-2.5e-07', '0.0001', '5e-05', '123.456'];
    expect([1e-5, 500000, 32, 0.02, 0, 1e16, -2.5e-7, 1e-4, 5e-5, 123.456].map(pythonFloat)).toEqual(want);
  });

  it('sorts keys at every depth, escapes non-ASCII, writes floats only where told', () => {
    // python3 -c 'import json; print(json.dumps({"b": [1, {"d": 2.0, "c": "é"}], "a": {}, "e": []}, indent=2, sort_keys=True))'
    const want = '{\n  "a": {},\n  "b": [\n    1,\n    {\n      "c": "\\u00e9",\n      "d": 2.0\n    }\n  ],\n  "e": []\n}';
    expect(pythonJson({ b: [1, { d: 2, c: 'é' }], a: {}, e: [] }, new Set(['b.d']))).toBe(want);
  });
});
