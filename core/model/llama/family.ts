/** Llama (3.x) as a family of the project: what the rest of the code asks of it. */
import { llama3TokenizerFiles } from '../../tokenizer/llama3.ts';
import type { Family } from '../family-type.ts';
import { makeLlama } from './make.ts';
import { llamaPrefixBlocks } from './prefix-graph.ts';
import { llamaConfigToJson, parseLlamaConfig, type LlamaConfig } from './config.ts';
import { LLAMA_LINEARS, llamaLayout, llamaLinearShape, type LlamaLinear } from './weights.ts';

export const LLAMA_FAMILY: Family<LlamaConfig> = {
  modelType: 'llama',
  name: 'Llama',
  parseConfig: parseLlamaConfig,
  configToJson: llamaConfigToJson,
  floatFields: [
    'rms_norm_eps',
    'rope_theta',
    'attention_dropout',
    'initializer_range',
    'rope_scaling.factor',
    'rope_scaling.low_freq_factor',
    'rope_scaling.high_freq_factor',
  ],
  layout: llamaLayout,
  linears: LLAMA_LINEARS,
  // nn.Linear keeps [out, in].
  linearInOut: (c, linear) => {
    const [out, inp] = llamaLinearShape(c, linear as LlamaLinear);
    return [inp, out];
  },
  linearsBeforeAttention: 3, // q, k, v
  attentionWidth: (c) => c.nHead * c.headDim,
  blockPath: (layer) => `layers.${layer}`,
  tokenTable: 'embed_tokens.weight',
  // Rotary embeddings: no position table.
  learnedPositions: false,
  fanInFanOut: false,
  // PEFT's default for Llama.
  defaultTargets: ['self_attn.q_proj', 'self_attn.v_proj'],
  // Devices hold no Llama tokenizer: they fetch the folder's tokenizer.json (approved by its owner).
  builtinTokenizer: false,
  specialTokens: (c) => ({ bos: c.bosTokenId, eos: c.eosTokenIds[0]!, separator: c.eosTokenIds[0]!, pad: c.padTokenId }),
  generation: true,
  stopTokens: (c) => c.eosTokenIds,
  make: makeLlama,
  // Meta publishes Llama in bfloat16; tiny models stay float32.
  storedDtype: (o) => (o.size ? 'BF16' : 'F32'),
  // Llama 3's tokenizer (its 128,256-token vocabulary), which devices fetch from the folder.
  tokenizerFiles: llama3TokenizerFiles,
  prefixBlocks: llamaPrefixBlocks,
  merged: 'a plain LlamaForCausalLM',
};
