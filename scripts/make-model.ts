/**
 * Writes a randomly initialised GPT-2 in the Hugging Face layout (config.json + model.safetensors), deterministic
 * for a seed. The same loader reads these folders and GPT-2 checkpoints downloaded from Hugging Face.
 */
import { gpt2Config, GPT2_SIZES } from '../core/model/config.ts';
import { initModel } from '../core/model/init.ts';
import { writeModelFolder } from '../gpu-server/model/folder.ts';
import { cliArgs, fail, int, run } from './cli.ts';

const USAGE = `usage: npm run make-model -- --out DIR [--size gpt2|gpt2-medium|gpt2-large|gpt2-xl]
       [--layers N] [--embd N] [--heads N] [--inner N] [--positions N] [--vocab N] [--labels N] [--seed N]
Without --size the model is tiny (4 layers, n_embd 64, 4 heads, 128 positions, GPT-2's 50257-token vocabulary).`;

const args = cliArgs(USAGE, {
  out: { type: 'string' },
  size: { type: 'string' },
  layers: { type: 'string' },
  embd: { type: 'string' },
  heads: { type: 'string' },
  inner: { type: 'string' },
  positions: { type: 'string' },
  vocab: { type: 'string' },
  labels: { type: 'string' },
  seed: { type: 'string' },
});

run(async () => {
  if (!args.out) fail(`--out is required\n\n${USAGE}`);
  if (args.size && !Object.hasOwn(GPT2_SIZES, args.size)) fail(`--size '${args.size}' is not one of ${Object.keys(GPT2_SIZES).join(', ')}`);
  const base = args.size ? GPT2_SIZES[args.size as keyof typeof GPT2_SIZES] : { nLayer: 4, nEmbd: 64, nHead: 4 };
  const nEmbd = int('embd', args.embd, base.nEmbd);
  const config = gpt2Config({
    nLayer: int('layers', args.layers, base.nLayer),
    nEmbd,
    nHead: int('heads', args.heads, base.nHead),
    nInner: int('inner', args.inner, 4 * nEmbd),
    nPositions: int('positions', args.positions, args.size ? 1024 : 128),
    vocabSize: int('vocab', args.vocab, 50257),
    numLabels: int('labels', args.labels, 2),
  });
  if (config.nEmbd % config.nHead !== 0) fail(`--embd ${config.nEmbd} must be divisible by --heads ${config.nHead}`);
  config.padTokenId = config.vocabSize - 1;
  const seed = int('seed', args.seed, 0);
  await writeModelFolder(args.out, initModel(config, { seed }));
  console.log(JSON.stringify({ wrote: args.out, seed, config }));
});
