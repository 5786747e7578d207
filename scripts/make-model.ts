/**
 * Writes a randomly initialised GPT-2 or Llama in the Hugging Face layout (config.json + model.safetensors, and for
 * Llama the Llama 3 tokenizer.json), deterministic for a seed. The same loader reads these folders and checkpoints
 * downloaded from Hugging Face.
 */
import { familyOf, makeModel, MODEL_TYPES, type ModelType } from '../core/model/family.ts';
import type { ShapeOptions } from '../core/model/shape.ts';
import { writeModelFolder, writeTokenizer } from '../gpu-server/model-folder/folder.ts';
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

run(async () => {
  if (!args.out) fail(`--out is required\n\n${USAGE}`);
  const arch = args.arch ?? 'gpt2';
  if (!(MODEL_TYPES as string[]).includes(arch)) fail(`--arch '${arch}' is not one of ${MODEL_TYPES.join(', ')}`);
  const family = familyOf(arch as ModelType);
  const shape: ShapeOptions = {
    size: args.size,
    layers: optionalInt('layers', args.layers),
    embd: optionalInt('embd', args.embd),
    heads: optionalInt('heads', args.heads),
    kvHeads: optionalInt('kv-heads', args['kv-heads']),
    inner: optionalInt('inner', args.inner),
    positions: optionalInt('positions', args.positions),
    vocab: optionalInt('vocab', args.vocab),
    labels: optionalInt('labels', args.labels),
    seed: optionalInt('seed', args.seed),
  };
  const model = makeModel(family.modelType, shape);
  const dtype = (args.dtype ?? family.storedDtype(shape)).toUpperCase();
  if (dtype !== 'F32' && dtype !== 'BF16') fail(`--dtype '${args.dtype}' is not one of f32, bf16`);
  await writeModelFolder(args.out, model, { dtype });
  await writeTokenizer(args.out, model.config);
  console.log(JSON.stringify({ wrote: args.out, arch, seed: shape.seed ?? 0, config: model.config }));
});

function optionalInt(name: string, value: string | undefined): number | undefined {
  return value === undefined ? undefined : int(name, value);
}
