/**
 * GPT-2 as a family of the project: what the rest of the code asks of it. Its config, weights, reference forward,
 * initialisation and ONNX prefix blocks are the files beside this one.
 */
import { GPT2_SPECIAL } from '../../tokenizer/gpt2.ts';
import { configToJson, parseGpt2Config, type GPT2Config } from './config.ts';
import type { Family } from '../family-type.ts';
import { makeGpt2 } from './make.ts';
import { gpt2PrefixBlocks } from './prefix-graph.ts';
import { BLOCK_LINEARS, gpt2Layout, linearShape, type BlockLinear } from './weights.ts';

export const GPT2_FAMILY: Family<GPT2Config> = {
  modelType: 'gpt2',
  name: 'GPT-2',
  parseConfig: parseGpt2Config,
  configToJson,
  floatFields: ['layer_norm_epsilon', 'resid_pdrop', 'embd_pdrop', 'attn_pdrop', 'initializer_range'],
  layout: gpt2Layout,
  linears: BLOCK_LINEARS,
  // Conv1D keeps [in, out].
  linearInOut: (c, linear) => linearShape(c, linear as BlockLinear),
  linearsBeforeAttention: 1, // c_attn
  attentionWidth: (c) => c.nEmbd,
  blockPath: (layer) => `h.${layer}`,
  tokenTable: 'wte.weight',
  learnedPositions: true,
  fanInFanOut: true,
  // PEFT's default for GPT-2.
  defaultTargets: ['attn.c_attn'],
  // Devices tokenize with GPT-2's BPE, built in (js-tiktoken): they need no tokenizer.json.
  builtinTokenizer: true,
  specialTokens: (c) => ({ ...GPT2_SPECIAL, pad: c.padTokenId }),
  generation: false,
  stopTokens: () => [GPT2_SPECIAL.eos],
  make: makeGpt2,
  storedDtype: () => 'F32',
  prefixBlocks: gpt2PrefixBlocks,
  merged: 'a plain GPT-2 for sequence classification',
};
