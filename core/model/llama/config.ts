/**
 * Llama configuration as plain data, read from a Hugging Face `config.json` (LlamaConfig). Only what changes the math
 * is kept; a field that would change it in a way this project does not implement is refused by name.
 */
import { ConfigError } from '../config-json.ts';

/** rope_scaling of rope_type "llama3" (Llama 3.1 / 3.2): long wavelengths slowed by `factor`, smoothly in between. */
export interface Llama3RopeScaling {
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositions: number;
}

export interface LlamaConfig {
  modelType: 'llama';
  nLayer: number;
  nEmbd: number;
  nHead: number;
  /** Grouped-query attention: query heads share nKvHead key/value heads (nHead / nKvHead each). */
  nKvHead: number;
  headDim: number;
  nInner: number;
  nPositions: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: Llama3RopeScaling | null;
  /** The LM head is the token table (no `lm_head.weight` of its own). */
  tieWordEmbeddings: boolean;
  /** Classes of a sequence-classification head (`score.weight`), when the folder has one. */
  numLabels: number;
  bosTokenId: number;
  /** Generation stops at any of these (Llama 3.2: <|end_of_text|>; instruct models add <|eot_id|>). */
  eosTokenIds: number[];
  padTokenId: number;
}

/** The Llama 3.2 base models as Meta publishes them on Hugging Face. */
export const LLAMA_SIZES = {
  'llama-3.2-1b': { nLayer: 16, nEmbd: 2048, nHead: 32, nKvHead: 8, headDim: 64, nInner: 8192 },
  'llama-3.2-3b': { nLayer: 28, nEmbd: 3072, nHead: 24, nKvHead: 8, headDim: 128, nInner: 8192 },
} as const;

/** A tiny Llama with Llama 3's vocabulary and rope scaling, for npm start, experiments and make-model's default. */
export const TINY_LLAMA = { nLayer: 4, nEmbd: 64, nHead: 4, nKvHead: 2, headDim: 16, nInner: 172, nPositions: 256 } as const;

/** Llama 3's special tokens (the tokenizer's ids). */
export const LLAMA3_TOKENS = { beginOfText: 128000, endOfText: 128001, eotId: 128009 } as const;

export function llamaConfig(overrides: Partial<LlamaConfig> = {}): LlamaConfig {
  const nEmbd = overrides.nEmbd ?? 2048;
  const nHead = overrides.nHead ?? 32;
  return {
    modelType: 'llama',
    ...LLAMA_SIZES['llama-3.2-1b'],
    headDim: nEmbd / nHead,
    nPositions: 131072,
    vocabSize: 128256,
    rmsNormEps: 1e-5,
    ropeTheta: 500000,
    ropeScaling: { factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 },
    tieWordEmbeddings: true,
    numLabels: 2,
    bosTokenId: LLAMA3_TOKENS.beginOfText,
    eosTokenIds: [LLAMA3_TOKENS.endOfText],
    padTokenId: LLAMA3_TOKENS.endOfText,
    ...overrides,
  };
}

/** LlamaConfig from a parsed `config.json` object; `file` names the file in errors. */
export function parseLlamaConfig(raw: Record<string, unknown>, file: string): LlamaConfig {
  const int = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (!Number.isSafeInteger(v) || (v as number) <= 0)
      throw new ConfigError(file, `field '${key}' must be a positive integer, got ${JSON.stringify(raw[key])}`);
    return v as number;
  };
  const positive = (v: unknown, key: string): number => {
    if (typeof v !== 'number' || !(v > 0)) throw new ConfigError(file, `field '${key}' must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  };
  if ((raw.hidden_act ?? 'silu') !== 'silu')
    throw new ConfigError(file, `field 'hidden_act' is ${JSON.stringify(raw.hidden_act)}; only "silu" (Llama's SwiGLU) is supported`);
  for (const key of ['attention_bias', 'mlp_bias'])
    if (raw[key] === true) throw new ConfigError(file, `field '${key}' = true is not supported (Llama has no biases)`);
  const nEmbd = int('hidden_size');
  const nHead = int('num_attention_heads');
  const nKvHead = int('num_key_value_heads', nHead);
  if (nHead % nKvHead !== 0) throw new ConfigError(file, `num_attention_heads (${nHead}) must be a multiple of num_key_value_heads (${nKvHead})`);
  if (raw.head_dim == null && nEmbd % nHead !== 0)
    throw new ConfigError(file, `hidden_size (${nEmbd}) must be divisible by num_attention_heads (${nHead}), or head_dim given`);
  const headDim = int('head_dim', nEmbd / nHead);
  if (headDim % 2 !== 0) throw new ConfigError(file, `head_dim (${headDim}) must be even for rotary embeddings`);
  const vocabSize = int('vocab_size');
  const tokenId = (key: string, v: unknown): number => {
    if (!Number.isSafeInteger(v) || (v as number) < 0 || (v as number) >= vocabSize)
      throw new ConfigError(file, `field '${key}' must be a token id below vocab_size (${vocabSize}), got ${JSON.stringify(v)}`);
    return v as number;
  };
  const eos = raw.eos_token_id ?? LLAMA3_TOKENS.endOfText;
  const eosTokenIds = (Array.isArray(eos) ? eos : [eos]).map((v) => tokenId('eos_token_id', v));
  const labels = raw.id2label && typeof raw.id2label === 'object' ? Object.keys(raw.id2label).length : undefined;
  return {
    modelType: 'llama',
    nLayer: int('num_hidden_layers'),
    nEmbd,
    nHead,
    nKvHead,
    headDim,
    nInner: int('intermediate_size'),
    nPositions: int('max_position_embeddings'),
    vocabSize,
    rmsNormEps: positive(raw.rms_norm_eps ?? 1e-6, 'rms_norm_eps'),
    ropeTheta: positive(raw.rope_theta ?? 10000, 'rope_theta'),
    ropeScaling: parseRopeScaling(raw.rope_scaling, file),
    tieWordEmbeddings: raw.tie_word_embeddings === true,
    numLabels: int('num_labels', labels ?? 2),
    bosTokenId: tokenId('bos_token_id', raw.bos_token_id ?? LLAMA3_TOKENS.beginOfText),
    eosTokenIds,
    padTokenId: tokenId('pad_token_id', raw.pad_token_id ?? eosTokenIds[0]),
  };
}

function parseRopeScaling(raw: unknown, file: string): Llama3RopeScaling | null {
  if (raw == null) return null;
  if (typeof raw !== 'object') throw new ConfigError(file, "field 'rope_scaling' must be an object or null");
  const r = raw as Record<string, unknown>;
  const type = r.rope_type ?? r.type;
  if (type === 'default') return null;
  if (type !== 'llama3')
    throw new ConfigError(file, `rope_scaling of type ${JSON.stringify(type)} is not supported; "llama3" (Llama 3.1/3.2) and "default" are`);
  const num = (key: string): number => {
    if (typeof r[key] !== 'number' || !((r[key] as number) > 0))
      throw new ConfigError(file, `field 'rope_scaling.${key}' must be a positive number, got ${JSON.stringify(r[key])}`);
    return r[key] as number;
  };
  const scaling = {
    factor: num('factor'),
    lowFreqFactor: num('low_freq_factor'),
    highFreqFactor: num('high_freq_factor'),
    originalMaxPositions: num('original_max_position_embeddings'),
  };
  if (scaling.highFreqFactor <= scaling.lowFreqFactor) throw new ConfigError(file, "field 'rope_scaling.high_freq_factor' must exceed low_freq_factor");
  return scaling;
}

/** The config as Hugging Face writes it, so `LlamaForCausalLM.from_pretrained` reads our folders too. */
export function llamaConfigToJson(c: LlamaConfig): Record<string, unknown> {
  const s = c.ropeScaling;
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_act: 'silu',
    hidden_size: c.nEmbd,
    intermediate_size: c.nInner,
    num_hidden_layers: c.nLayer,
    num_attention_heads: c.nHead,
    num_key_value_heads: c.nKvHead,
    head_dim: c.headDim,
    max_position_embeddings: c.nPositions,
    vocab_size: c.vocabSize,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    rope_scaling: s && {
      rope_type: 'llama3',
      factor: s.factor,
      low_freq_factor: s.lowFreqFactor,
      high_freq_factor: s.highFreqFactor,
      original_max_position_embeddings: s.originalMaxPositions,
    },
    tie_word_embeddings: c.tieWordEmbeddings,
    attention_bias: false,
    mlp_bias: false,
    attention_dropout: 0,
    initializer_range: 0.02,
    pretraining_tp: 1,
    use_cache: true,
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenIds.length === 1 ? c.eosTokenIds[0] : c.eosTokenIds,
    // As transformers writes a config: what differs from the defaults a reader assumes (no pad token: the first end
    // token; two labels), and a label map rather than num_labels.
    ...(c.padTokenId === c.eosTokenIds[0] ? {} : { pad_token_id: c.padTokenId }),
    ...(c.numLabels === 2
      ? {}
      : {
          id2label: Object.fromEntries(Array.from({ length: c.numLabels }, (_, i) => [String(i), `LABEL_${i}`])),
          label2id: Object.fromEntries(Array.from({ length: c.numLabels }, (_, i) => [`LABEL_${i}`, i])),
        }),
  };
}
