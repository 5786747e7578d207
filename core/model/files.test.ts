import { describe, expect, it } from 'vitest';
import { parseSafetensors, serializeSafetensors } from '../tensors/safetensors.ts';
import { fromFloat32, type Tensor } from '../tensors/tensor.ts';
import { configToJson, parseConfig } from './gpt2/config.ts';
import { parseModelConfig } from './family.ts';
import { CONFIG_FILE, loadModel, modelFiles, WEIGHTS_FILE, type ModelSource } from './files.ts';
import { initModel } from './gpt2/init.ts';
import { paramsToTensors, SCORE } from './gpt2/weights.ts';
import { TINY } from '../../tests/fixtures.ts';

function memorySource(files: Record<string, Uint8Array>): ModelSource {
  return {
    path: (file) => `mem/${file}`,
    read: async (file) => files[file] ?? Promise.reject(new Error(`mem/${file}: not found`)),
  };
}

const model = initModel(TINY, { seed: 3, paramNoise: 0.1 });
const configBytes = Object.fromEntries(modelFiles(model))[CONFIG_FILE];
const withTensors = (tensors: Map<string, Tensor>) => memorySource({ [CONFIG_FILE]: configBytes, [WEIGHTS_FILE]: serializeSafetensors(tensors) });

describe('loading a Hugging Face GPT-2 folder', () => {
  it('round-trips every parameter through config.json and model.safetensors', async () => {
    const loaded = await loadModel(memorySource(Object.fromEntries(modelFiles(model))));
    expect(loaded.config).toEqual(model.config);
    expect([...loaded.params.keys()]).toEqual([...model.params.keys()]);
    for (const [name, p] of model.params) expect(loaded.params.get(name), name).toEqual(p);
  });

  it('accepts names with or without the transformer. prefix, F16 weights, the tied lm_head and mask buffers', async () => {
    const tensors = new Map<string, Tensor>();
    for (const [name, t] of paramsToTensors(model)) {
      const bare = name.replace(/^transformer\./, '');
      tensors.set(bare, bare === 'wpe.weight' ? fromFloat32(t.data as Float32Array, t.shape, 'F16') : t);
    }
    tensors.set('lm_head.weight', tensors.get('wte.weight')!);
    tensors.set('h.0.attn.bias', { dtype: 'F32', shape: [1], data: new Float32Array(1) });
    tensors.delete(SCORE); // a GPT2LMHeadModel checkpoint has no classification head
    const loaded = await loadModel(withTensors(tensors));
    expect(loaded.params.has(SCORE)).toBe(false);
    expect(loaded.params.get('h.1.mlp.c_fc.weight')).toEqual(model.params.get('h.1.mlp.c_fc.weight'));
    const wpe = loaded.params.get('wpe.weight')!;
    wpe.forEach((v, i) => expect(Math.abs(v - model.params.get('wpe.weight')![i])).toBeLessThan(1e-3));
  });

  it('names the file and tensor that is missing, misshapen, unexpected or not floating point', async () => {
    const tensors = () => paramsToTensors(model);
    const missing = tensors();
    missing.delete('transformer.h.2.mlp.c_proj.bias');
    await expect(loadModel(withTensors(missing))).rejects.toThrow("mem/model.safetensors: tensor 'h.2.mlp.c_proj.bias': missing");
    const misshapen = tensors();
    misshapen.set('transformer.h.1.attn.c_attn.weight', { dtype: 'F32', shape: [96, 32], data: new Float32Array(96 * 32) });
    await expect(loadModel(withTensors(misshapen))).rejects.toThrow(
      "mem/model.safetensors: tensor 'transformer.h.1.attn.c_attn.weight': shape [96,32] does not match [32,96] expected from config.json",
    );
    const extra = tensors();
    extra.set('transformer.h.0.attn.q_proj.weight', { dtype: 'F32', shape: [1], data: new Float32Array(1) });
    await expect(loadModel(withTensors(extra))).rejects.toThrow(/tensor 'transformer.h.0.attn.q_proj.weight': unexpected tensor/);
    const ints = tensors();
    ints.set('transformer.ln_f.bias', { dtype: 'I32', shape: [32], data: new Int32Array(32) });
    await expect(loadModel(withTensors(ints))).rejects.toThrow(/tensor 'transformer.ln_f.bias': dtype I32 is not a floating-point type/);
  });

  it('names the file for a truncated weights file', async () => {
    const bytes = Object.fromEntries(modelFiles(model))[WEIGHTS_FILE];
    await expect(loadModel(memorySource({ [CONFIG_FILE]: configBytes, [WEIGHTS_FILE]: bytes.subarray(0, bytes.length - 100) }))).rejects.toThrow(
      /^mem\/model\.safetensors: tensor 'score\.weight': truncated/,
    );
    expect(() => parseSafetensors(bytes.subarray(0, 3), 'w')).toThrow(/truncated/);
  });
});

describe('config.json', () => {
  const json = configToJson(TINY);
  const text = (overrides: Record<string, unknown>) => JSON.stringify({ ...json, ...overrides });

  it('reads the Hugging Face fields, with the defaults transformers uses', () => {
    const c = parseConfig(text({ n_inner: null, num_labels: undefined, pad_token_id: undefined }));
    expect(c.nInner).toBe(4 * TINY.nEmbd);
    expect(c.numLabels).toBe(TINY.numLabels); // from id2label
    expect(c.padTokenId).toBe(TINY.vocabSize - 1); // eos, GPT-2's last token
  });

  it('refuses an unsupported model_type clearly, not with a crash', () => {
    expect(() => parseModelConfig(text({ model_type: 'bert' }), 'cfg/config.json')).toThrow(
      'cfg/config.json: unsupported model_type "bert": this version supports "gpt2", "llama" (Hugging Face GPT-2 and Llama checkpoints)',
    );
    expect(() => parseModelConfig(text({ model_type: undefined }))).toThrow(/unsupported model_type undefined/);
  });

  it('names the field that is wrong', () => {
    expect(() => parseConfig('{not json', 'c.json')).toThrow(/^c\.json: not valid JSON/);
    expect(() => parseConfig(text({ n_layer: 0 }))).toThrow("config.json: field 'n_layer' must be a positive integer, got 0");
    expect(() => parseConfig(text({ n_head: 5 }))).toThrow('n_embd (32) must be divisible by n_head (5)');
    expect(() => parseConfig(text({ activation_function: 'relu' }))).toThrow(/'activation_function' is "relu"/);
    expect(() => parseConfig(text({ layer_norm_epsilon: -1 }))).toThrow(/'layer_norm_epsilon'/);
    expect(() => parseConfig(text({ pad_token_id: 1000 }))).toThrow(/'pad_token_id' must be a token id below vocab_size \(97\)/);
  });
});
