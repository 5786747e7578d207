/**
 * Writes a randomly initialised GPT-2 or Llama in the Hugging Face layout (config.json + model.safetensors, and for
 * Llama the Llama 3 tokenizer.json), deterministic for a seed. The same loader reads these folders and checkpoints
 * downloaded from Hugging Face.
 */
import { familyOf, makeModel, MODEL_TYPES, type ModelType } from '../core/model/family.ts';
import { MAX_SHARD_BYTES } from '../core/model/files.ts';
import type { ShapeOptions } from '../core/model/shape.ts';
import { writeModelFolder, writeTokenizer } from '../gpu-server/model-folder/folder.ts';
import { cliArgs, fail, int, run } from '../infra/cli.ts';

const USAGE = `usage: npm run make-model -- --out DIR [--arch gpt2|llama] [--size NAME]
       [--layers N] [--embd N] [--heads N] [--kv-heads N] [--inner N] [--positions N] [--vocab N] [--labels N] [--seed N] [--dtype f32|bf16|f16] [--max-shard-size 5GB]
--arch gpt2 (default): --size gpt2|gpt2-medium|gpt2-large|gpt2-xl; without it the model is tiny (4 layers, n_embd 64,
  4 heads, 128 positions, GPT-2's 50257-token vocabulary).
--arch llama: --size llama-3.2-1b|llama-3.2-3b (Meta's shapes, tied embeddings, llama3 rope scaling); without it tiny
  (4 layers, hidden 64, 4 heads, 2 key/value heads, 256 positions, Llama 3's 128256-token vocabulary).
--dtype: how weights are stored; bf16 (as Meta publishes Llama) is the default for --size llama-*, f32 otherwise.
--max-shard-size: as save_pretrained's max_shard_size (default 5GB; 1GB = 10^9 bytes, 1GiB = 2^30): a larger
  checkpoint is written as model-0000i-of-0000n.safetensors shards and model.safetensors.index.json.`;

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
  'max-shard-size': { type: 'string' },
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
  if (dtype !== 'F32' && dtype !== 'BF16' && dtype !== 'F16') fail(`--dtype '${args.dtype}' is not one of f32, bf16, f16`);
  const maxShardBytes = args['max-shard-size'] === undefined ? MAX_SHARD_BYTES : fileSize(args['max-shard-size']);
  const started = performance.now();
  await writeModelFolder(args.out, model, { dtype, maxShardBytes });
  await writeTokenizer(args.out, model.config);
  console.log(
    JSON.stringify({ wrote: args.out, arch, dtype, seed: shape.seed ?? 0, seconds: Math.round((performance.now() - started) / 1000), config: model.config }),
  );
});

/** A size as save_pretrained reads max_shard_size: bytes, or a number with KB/MB/GB (powers of 10) or KiB/MiB/GiB (of 2). */
function fileSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?$/i.exec(text.trim());
  if (!m) fail(`--max-shard-size '${text}' is not a size: give bytes or a number with KB, MB, GB, KiB, MiB or GiB (as 5GB)`);
  const unit = (m[2] ?? 'B').toUpperCase();
  const scale = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, KIB: 2 ** 10, MIB: 2 ** 20, GIB: 2 ** 30 }[unit]!;
  const bytes = Math.floor(Number(m[1]) * scale);
  if (bytes < 1) fail(`--max-shard-size '${text}' must be at least one byte`);
  return bytes;
}

function optionalInt(name: string, value: string | undefined): number | undefined {
  return value === undefined ? undefined : int(name, value);
}
