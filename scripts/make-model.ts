/**
 * Writes a randomly initialised GPT-2 or Llama in the Hugging Face layout (config.json + model.safetensors, and for
 * Llama the Llama 3 tokenizer.json), deterministic for a seed. The same loader reads these folders and checkpoints
 * downloaded from Hugging Face.
 */
import { gpt2Config, GPT2_SIZES } from '../core/model/config.ts';
import type { Model } from '../core/model/family.ts';
import { initModel } from '../core/model/init.ts';
import { llamaConfig, LLAMA_SIZES, TINY_LLAMA } from '../core/model/llama/config.ts';
import { initLlama } from '../core/model/llama/init.ts';
import { writeLlama3Tokenizer, writeModelFolder } from '../gpu-server/model/folder.ts';
import { cliArgs, fail, int, run } from '../infra/cli.ts';

const USAGE = `usage: npm run make-model -- --out DIR [--arch gpt2|llama] [--size NAME]
       [--layers N] [--embd N] [--heads N] [--kv-heads N] [--inner N] [--positions N] [--vocab N] [--labels N] [--seed N] [--dtype f32|bf16]
--arch gpt2 (default): --size gpt2|gpt2-medium|gpt2-large|gpt2-xl; without it the model is tiny (4 layers, n_embd 64,
  4 heads, 128 positions, GPT-2's 50257-token vocabulary).
--arch llama: --size llama-3.2-1b|llama-3.2-3b (Meta's shapes, tied embeddings, llama3 rope scaling); without it tiny
  (4 layers, hidden 64, 4 heads, 2 key/value heads, 256 positions, Llama 3's 128256-token vocabulary).
--dtype: how weights are stored; bf16 (as Meta publishes Llama) is the default for --size llama-*, f32 otherwise.`;

const args = cliArgs(USAGE, {
  out: { type: 'string' },
  arch: { type: 'string' },
  size: { type: 'string' },
  layers: { type: 'string' },
  embd: { type: 'string' },
  heads: { type: 'string' },
  'kv-heads': { type: 'string' },
  inner: { type: 'string' },
  positions: { type: 'string' },
  vocab: { type: 'string' },
  labels: { type: 'string' },
  seed: { type: 'string' },
  dtype: { type: 'string' },
});

function gpt2(): Model {
  if (args['kv-heads']) fail('--kv-heads is for --arch llama (GPT-2 has one key/value head per query head)');
  if (args.size && !Object.hasOwn(GPT2_SIZES, args.size)) fail(`--size '${args.size}' is not one of ${Object.keys(GPT2_SIZES).join(', ')}`);
  const base = args.size ? GPT2_SIZES[args.size as keyof typeof GPT2_SIZES] : { nLayer: 4, nEmbd: 64, nHead: 4 };
  const nEmbd = int('embd', args.embd, base.nEmbd);
  const vocabSize = int('vocab', args.vocab, 50257);
  const config = gpt2Config({
    nLayer: int('layers', args.layers, base.nLayer),
    nEmbd,
    nHead: int('heads', args.heads, base.nHead),
    nInner: int('inner', args.inner, 4 * nEmbd),
    nPositions: int('positions', args.positions, args.size ? 1024 : 128),
    vocabSize,
    numLabels: int('labels', args.labels, 2),
    padTokenId: vocabSize - 1,
  });
  if (config.nEmbd % config.nHead !== 0) fail(`--embd ${config.nEmbd} must be divisible by --heads ${config.nHead}`);
  return initModel(config, { seed: int('seed', args.seed, 0) });
}

function llama(): Model {
  if (args.size && !Object.hasOwn(LLAMA_SIZES, args.size)) fail(`--size '${args.size}' is not one of ${Object.keys(LLAMA_SIZES).join(', ')}`);
  const base = args.size ? { ...LLAMA_SIZES[args.size as keyof typeof LLAMA_SIZES], nPositions: 131072 } : TINY_LLAMA;
  const nEmbd = int('embd', args.embd, base.nEmbd);
  const nHead = int('heads', args.heads, base.nHead);
  const nKvHead = int('kv-heads', args['kv-heads'], base.nKvHead);
  if (nEmbd % nHead !== 0) fail(`--embd ${nEmbd} must be divisible by --heads ${nHead}`);
  if (nHead % nKvHead !== 0) fail(`--heads ${nHead} must be a multiple of --kv-heads ${nKvHead}`);
  if ((nEmbd / nHead) % 2 !== 0) fail(`the head size (--embd / --heads = ${nEmbd / nHead}) must be even for rotary embeddings`);
  const config = llamaConfig({
    nLayer: int('layers', args.layers, base.nLayer),
    nEmbd,
    nHead,
    nKvHead,
    headDim: nEmbd / nHead,
    nInner: int('inner', args.inner, base.nInner),
    nPositions: int('positions', args.positions, base.nPositions),
    numLabels: int('labels', args.labels, 2),
  });
  if (args.vocab) fail("--vocab is fixed for --arch llama: Llama 3's tokenizer has 128256 tokens");
  return initLlama(config, { seed: int('seed', args.seed, 0) });
}

run(async () => {
  if (!args.out) fail(`--out is required\n\n${USAGE}`);
  const arch = args.arch ?? 'gpt2';
  if (arch !== 'gpt2' && arch !== 'llama') fail(`--arch '${arch}' is not one of gpt2, llama`);
  const model = arch === 'llama' ? llama() : gpt2();
  const dtype = (args.dtype ?? (arch === 'llama' && args.size ? 'bf16' : 'f32')).toUpperCase();
  if (dtype !== 'F32' && dtype !== 'BF16') fail(`--dtype '${args.dtype}' is not one of f32, bf16`);
  await writeModelFolder(args.out, model, { dtype });
  if (arch === 'llama') await writeLlama3Tokenizer(args.out);
  console.log(JSON.stringify({ wrote: args.out, arch, seed: int('seed', args.seed, 0), config: model.config }));
});
