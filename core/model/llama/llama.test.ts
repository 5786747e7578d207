import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { serializeSafetensors } from '../../tensors/safetensors.ts';
import { fromFloat32, type Tensor } from '../../tensors/tensor.ts';
import { parseModelConfig } from '../family.ts';
import { loadModel, modelFiles, type ModelSource } from '../files.ts';
import { paramsToTensors } from '../params.ts';
import { llamaConfig, llamaConfigToJson, type LlamaConfig } from './config.ts';
import { initLlama } from './init.ts';
import { llamaReferenceHidden, llamaReferenceLogits, ropeInvFreq } from './reference.ts';
import { llamaLayout, llamaForwardOrder, type LlamaModel } from './weights.ts';

const golden = JSON.parse(readFileSync(new URL('./golden.json', import.meta.url), 'utf8'));

/** The weights golden.py generates: 0.3 sin(0.37 k + n) for the n-th tensor (RMSNorm weights around 1), in float32. */
function goldenModel(): LlamaModel {
  const g = golden.config;
  const config = llamaConfig({
    nLayer: g.layers,
    nEmbd: g.d,
    nHead: g.heads,
    nKvHead: g.kv,
    headDim: g.hd,
    nInner: g.inner,
    vocabSize: g.vocab,
    nPositions: 64,
    rmsNormEps: g.eps,
    ropeTheta: g.theta,
    tieWordEmbeddings: false,
    bosTokenId: 1,
    eosTokenIds: [2],
    padTokenId: 0,
    ropeScaling: { factor: g.factor, lowFreqFactor: g.low, highFreqFactor: g.high, originalMaxPositions: g.original },
  });
  const params = new Map<string, Float32Array>();
  // golden.py numbers the tensors as the forward uses them.
  llamaForwardOrder(config)
    .filter(([name]) => name !== 'score.weight')
    .forEach(([name, shape], n) => {
      const p = new Float32Array(shape.reduce((a, b) => a * b, 1));
      for (let k = 0; k < p.length; k++) p[k] = (shape.length === 1 ? 1 : 0) + 0.3 * Math.sin(0.37 * k + n);
      params.set(name, p);
    });
  return { config, params };
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rel: number) {
  expect(actual.length).toBe(expected.length);
  const scale = Math.max(...Array.from(expected, Math.abs));
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]) / scale);
  expect(worst).toBeLessThan(rel);
}

const memory = (files: Record<string, Uint8Array>): ModelSource => ({
  path: (f) => `mem/${f}`,
  read: async (f) => files[f] ?? Promise.reject(new Error(`mem/${f}: not found`)),
});

describe('Llama reference forward', () => {
  it('llama3 rope scaling: hand-computed inverse frequencies', () => {
    // head_dim 8, theta 10000: base 1, 0.1, 0.01, 0.001 -> wavelengths 6.28, 62.8, 628, 6283 against 16/4 = 4 and 16/1 = 16.
    const c = llamaConfig({
      nEmbd: 8,
      nHead: 1,
      headDim: 8,
      ropeTheta: 10000,
      ropeScaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 16 },
    });
    const smooth = (16 / (2 * Math.PI) - 1) / 3; // 6.28 is between 4 and 16: interpolated
    expectClose(ropeInvFreq(c), [(1 - smooth) / 8 + smooth, 0.1 / 8, 0.01 / 8, 0.001 / 8], 1e-15);
    expect(Array.from(ropeInvFreq({ ...c, ropeScaling: null }))).toEqual([1, 0.1, 0.01, 0.001].map((f, i) => 1 / 10000 ** ((2 * i) / 8)));
    expectClose(ropeInvFreq(goldenModel().config), golden.inv_freq, 1e-15);
  });

  it('matches numpy written the way transformers writes it (golden.py): hidden states at a cut and logits', () => {
    const model = goldenModel();
    const ids = golden.ids.flat();
    const mask = golden.mask.flat();
    const hidden = llamaReferenceHidden(model, ids, mask, 2, 6, 1);
    // Padded positions of the second row differ by design (they attend to nothing real); compare real tokens.
    const real = (xs: ArrayLike<number>, width: number) => Array.from(xs).filter((_, i) => mask[Math.floor(i / width)]);
    expectClose(real(hidden, model.config.nEmbd), real(golden.hidden_cut1, model.config.nEmbd), 1e-9);
    const logits = llamaReferenceLogits(model, llamaReferenceHidden(model, ids, mask, 2, 6), 12);
    expectClose(real(logits, model.config.vocabSize), real(golden.logits, model.config.vocabSize), 1e-9);
  });

  it('grouped-query attention equals multi-head attention with each key/value head repeated', () => {
    const gqa = initLlama(
      llamaConfig({
        nLayer: 1,
        nEmbd: 16,
        nHead: 4,
        nKvHead: 2,
        headDim: 4,
        nInner: 32,
        vocabSize: 50,
        nPositions: 16,
        bosTokenId: 1,
        eosTokenIds: [2],
        padTokenId: 0,
      }),
      { seed: 4, normNoise: 0.2 },
    );
    const mha: LlamaModel = { config: { ...gqa.config, nKvHead: 4 }, params: new Map(gqa.params) };
    for (const proj of ['k_proj', 'v_proj']) {
      const w = gqa.params.get(`layers.0.self_attn.${proj}.weight`)!; // [2 heads * 4, 16]
      const repeated = new Float32Array(4 * 4 * 16);
      for (let h = 0; h < 4; h++) repeated.set(w.subarray(Math.floor(h / 2) * 64, Math.floor(h / 2) * 64 + 64), h * 64);
      mha.params.set(`layers.0.self_attn.${proj}.weight`, repeated);
    }
    const ids = [5, 9, 13, 2, 44, 7, 7, 1];
    const mask = [1, 1, 1, 1, 1, 1, 1, 0];
    expectClose(llamaReferenceHidden(gqa, ids, mask, 2, 4), llamaReferenceHidden(mha, ids, mask, 2, 4), 1e-12);
  });
});

describe('Llama checkpoints in the Hugging Face layout', () => {
  const model = initLlama(
    llamaConfig({ nLayer: 2, nEmbd: 16, nHead: 4, nKvHead: 2, nInner: 24, vocabSize: 60, nPositions: 32, bosTokenId: 1, eosTokenIds: [2, 3], padTokenId: 2 }),
    { seed: 2, normNoise: 0.1 },
  );

  it('round-trips config.json and model.safetensors, with the model. prefix and a tied head', async () => {
    const files = Object.fromEntries(modelFiles(model));
    const loaded = await loadModel(memory(files));
    expect(loaded.config).toEqual(model.config);
    expect([...loaded.params.keys()]).toEqual([...model.params.keys()]);
    for (const [name, p] of model.params) expect(loaded.params.get(name), name).toEqual(p);
    const names = [...paramsToTensors(llamaLayout(model.config), model.params).keys()];
    expect(names).toContain('model.layers.1.self_attn.q_proj.weight');
    expect(names).not.toContain('lm_head.weight');
  });

  it('reads BF16 checkpoints as published, sharded through model.safetensors.index.json, with rotary buffers and a tied lm_head', async () => {
    const tensors = paramsToTensors(llamaLayout(model.config), model.params);
    const bf16 = new Map<string, Tensor>([...tensors].map(([n, t]) => [n, fromFloat32(t.data as Float32Array, t.shape, 'BF16')]));
    bf16.set('model.layers.0.self_attn.rotary_emb.inv_freq', fromFloat32(new Float32Array(2), [2], 'F32'));
    bf16.set('lm_head.weight', bf16.get('model.embed_tokens.weight')!);
    const names = [...bf16.keys()];
    const shard = (part: string[]) => serializeSafetensors(new Map(part.map((n) => [n, bf16.get(n)!])));
    const half = Math.floor(names.length / 2);
    const weightMap = Object.fromEntries(names.map((n, i) => [n, i < half ? 'model-00001-of-00002.safetensors' : 'model-00002-of-00002.safetensors']));
    const loaded = await loadModel(
      memory({
        'config.json': Object.fromEntries(modelFiles(model))['config.json'],
        'model.safetensors.index.json': new TextEncoder().encode(JSON.stringify({ metadata: {}, weight_map: weightMap })),
        'model-00001-of-00002.safetensors': shard(names.slice(0, half)),
        'model-00002-of-00002.safetensors': shard(names.slice(half)),
      }),
    );
    const q = model.params.get('layers.1.self_attn.q_proj.weight')!;
    expectClose(loaded.params.get('layers.1.self_attn.q_proj.weight')!, q, 2 ** -8);
    expect(loaded.params.has('lm_head.weight')).toBe(false);
  });

  it('writes BF16 shards with their index, as save_pretrained does, and reads them back', async () => {
    const files = Object.fromEntries(modelFiles(model, { dtype: 'BF16', maxShardBytes: 4096 }));
    const shards = Object.keys(files).filter((f) => f.endsWith('.safetensors'));
    expect(shards.length).toBeGreaterThan(2);
    expect(shards[0]).toBe(`model-00001-of-${String(shards.length).padStart(5, '0')}.safetensors`);
    expect(files['model.safetensors']).toBeUndefined();
    const loaded = await loadModel(memory(files));
    for (const [name, p] of model.params) expectClose(loaded.params.get(name)!, p, 2 ** -8);
  });

  it('an untied head needs lm_head.weight; a missing one is named', async () => {
    const untied = initLlama({ ...model.config, tieWordEmbeddings: false }, { seed: 1 });
    expect([...(await loadModel(memory(Object.fromEntries(modelFiles(untied))))).params.keys()]).toContain('lm_head.weight');
    const tensors = paramsToTensors(llamaLayout(untied.config), untied.params);
    tensors.delete('lm_head.weight');
    await expect(
      loadModel(memory({ 'config.json': Object.fromEntries(modelFiles(untied))['config.json'], 'model.safetensors': serializeSafetensors(tensors) })),
    ).rejects.toThrow("mem/model.safetensors: tensor 'lm_head.weight': missing");
  });

  it("parses Llama-3.2-1B's published config.json and refuses what it does not implement, by field", () => {
    const published = {
      architectures: ['LlamaForCausalLM'],
      attention_bias: false,
      attention_dropout: 0.0,
      bos_token_id: 128000,
      eos_token_id: 128001,
      head_dim: 64,
      hidden_act: 'silu',
      hidden_size: 2048,
      initializer_range: 0.02,
      intermediate_size: 8192,
      max_position_embeddings: 131072,
      mlp_bias: false,
      model_type: 'llama',
      num_attention_heads: 32,
      num_hidden_layers: 16,
      num_key_value_heads: 8,
      pretraining_tp: 1,
      rms_norm_eps: 1e-5,
      rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
      rope_theta: 500000.0,
      tie_word_embeddings: true,
      torch_dtype: 'bfloat16',
      transformers_version: '4.45.0.dev0',
      use_cache: true,
      vocab_size: 128256,
    };
    const c = parseModelConfig(JSON.stringify(published)) as LlamaConfig;
    expect(c).toEqual(llamaConfig());
    expect(parseModelConfig(JSON.stringify(llamaConfigToJson(c)))).toEqual(c);
    const bad = (patch: object) => () => parseModelConfig(JSON.stringify({ ...published, ...patch }), 'm/config.json');
    expect(bad({ rope_scaling: { rope_type: 'yarn', factor: 4 } })).toThrow('m/config.json: rope_scaling of type "yarn" is not supported');
    expect(bad({ num_key_value_heads: 5 })).toThrow('num_attention_heads (32) must be a multiple of num_key_value_heads (5)');
    expect(bad({ hidden_act: 'gelu' })).toThrow("field 'hidden_act'");
    expect(bad({ attention_bias: true })).toThrow("field 'attention_bias' = true is not supported");
    expect(bad({ eos_token_id: [128001, 999999] })).toThrow("field 'eos_token_id' must be a token id below vocab_size (128256)");
    expect(bad({ model_type: 'mistral' })).toThrow('unsupported model_type "mistral": this version supports "gpt2", "llama"');
  });
});
