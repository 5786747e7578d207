/**
 * GPT-2 configuration as plain data, read from a Hugging Face `config.json`.
 * Only what changes the math is kept; unknown fields are ignored, as transformers does.
 */
import { ConfigError, parseJsonObject } from '../config-json.ts';

export interface GPT2Config {
  modelType: 'gpt2';
  nLayer: number;
  nEmbd: number;
  nHead: number;
  nInner: number;
  nPositions: number;
  vocabSize: number;
  layerNormEpsilon: number;
  /** Classes of the sequence-classification head (`score.weight`). */
  numLabels: number;
  /** Token used for padding; GPT-2 has none of its own, so <|endoftext|> (50256) by convention. */
  padTokenId: number;
}

/** The GPT-2 sizes released by OpenAI, as Hugging Face publishes them. */
export const GPT2_SIZES = {
  gpt2: { nLayer: 12, nEmbd: 768, nHead: 12 },
  'gpt2-medium': { nLayer: 24, nEmbd: 1024, nHead: 16 },
  'gpt2-large': { nLayer: 36, nEmbd: 1280, nHead: 20 },
  'gpt2-xl': { nLayer: 48, nEmbd: 1600, nHead: 25 },
} as const;

export function gpt2Config(overrides: Partial<GPT2Config> = {}): GPT2Config {
  const nEmbd = overrides.nEmbd ?? 768;
  return {
    modelType: 'gpt2',
    nLayer: 12,
    nEmbd,
    nHead: 12,
    nInner: 4 * nEmbd,
    nPositions: 1024,
    vocabSize: 50257,
    layerNormEpsilon: 1e-5,
    numLabels: 2,
    padTokenId: 50256,
    ...overrides,
  };
}

/** Parses a GPT-2 `config.json`'s text; `file` names the file in errors. */
export function parseConfig(text: string, file = 'config.json'): GPT2Config {
  return parseGpt2Config(parseJsonObject(text, file), file);
}

export function parseGpt2Config(raw: Record<string, unknown>, file: string): GPT2Config {
  if (raw.model_type !== 'gpt2') {
    throw new ConfigError(file, `unsupported model_type ${JSON.stringify(raw.model_type)}: this version supports "gpt2" (Hugging Face GPT-2 checkpoints)`);
  }
  const int = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (!Number.isSafeInteger(v) || (v as number) <= 0) {
      throw new ConfigError(file, `field '${key}' must be a positive integer, got ${JSON.stringify(raw[key])}`);
    }
    return v as number;
  };
  const activation = raw.activation_function ?? 'gelu_new';
  if (activation !== 'gelu_new') {
    throw new ConfigError(file, `field 'activation_function' is ${JSON.stringify(activation)}; only "gelu_new" (GPT-2's) is supported`);
  }
  if (raw.scale_attn_by_inverse_layer_idx === true) {
    throw new ConfigError(file, "field 'scale_attn_by_inverse_layer_idx' = true is not supported");
  }
  if (raw.scale_attn_weights === false) throw new ConfigError(file, "field 'scale_attn_weights' = false is not supported");
  const nEmbd = int('n_embd');
  const nHead = int('n_head');
  if (nEmbd % nHead !== 0) throw new ConfigError(file, `n_embd (${nEmbd}) must be divisible by n_head (${nHead})`);
  const eps = raw.layer_norm_epsilon ?? 1e-5;
  if (typeof eps !== 'number' || !(eps > 0)) throw new ConfigError(file, "field 'layer_norm_epsilon' must be a positive number");
  const labels = raw.id2label && typeof raw.id2label === 'object' ? Object.keys(raw.id2label).length : undefined;
  const vocabSize = int('vocab_size');
  const pad = raw.pad_token_id ?? raw.eos_token_id ?? vocabSize - 1;
  if (!Number.isSafeInteger(pad) || (pad as number) < 0 || (pad as number) >= vocabSize) {
    throw new ConfigError(file, `field 'pad_token_id' must be a token id below vocab_size (${vocabSize})`);
  }
  return {
    modelType: 'gpt2',
    nLayer: int('n_layer'),
    nEmbd,
    nHead,
    nInner: raw.n_inner == null ? 4 * nEmbd : int('n_inner'),
    nPositions: int('n_positions'),
    vocabSize,
    layerNormEpsilon: eps,
    numLabels: int('num_labels', labels ?? 2),
    padTokenId: pad as number,
  };
}

/** The config as Hugging Face writes it, so `from_pretrained` reads our folders too. */
export function configToJson(c: GPT2Config): Record<string, unknown> {
  return {
    architectures: ['GPT2ForSequenceClassification'],
    model_type: 'gpt2',
    activation_function: 'gelu_new',
    n_layer: c.nLayer,
    n_embd: c.nEmbd,
    n_head: c.nHead,
    n_inner: c.nInner === 4 * c.nEmbd ? null : c.nInner,
    n_positions: c.nPositions,
    n_ctx: c.nPositions,
    vocab_size: c.vocabSize,
    layer_norm_epsilon: c.layerNormEpsilon,
    num_labels: c.numLabels,
    id2label: Object.fromEntries(Array.from({ length: c.numLabels }, (_, i) => [String(i), `LABEL_${i}`])),
    label2id: Object.fromEntries(Array.from({ length: c.numLabels }, (_, i) => [`LABEL_${i}`, i])),
    pad_token_id: c.padTokenId,
    // GPT-2's <|endoftext|> is its last token (50256).
    bos_token_id: c.vocabSize - 1,
    eos_token_id: c.vocabSize - 1,
    resid_pdrop: 0.1,
    embd_pdrop: 0.1,
    attn_pdrop: 0.1,
    initializer_range: 0.02,
    scale_attn_weights: true,
  };
}
