/** A randomly initialised GPT-2 of a given shape (make-model, tests' fixtures): GPT-2's vocabulary unless told. */
import type { ShapeOptions } from '../shape.ts';
import { sizeOf } from '../shape.ts';
import { gpt2Config, GPT2_SIZES } from './config.ts';
import { initModel } from './init.ts';
import type { GPT2Model } from './weights.ts';

export function makeGpt2(o: ShapeOptions): GPT2Model {
  if (o.kvHeads !== undefined) throw new Error('--kv-heads is for --arch llama (GPT-2 has one key/value head per query head)');
  const base = o.size ? sizeOf(GPT2_SIZES, o.size) : { nLayer: 4, nEmbd: 64, nHead: 4 };
  const nEmbd = o.embd ?? base.nEmbd;
  const vocabSize = o.vocab ?? 50257;
  const config = gpt2Config({
    nLayer: o.layers ?? base.nLayer,
    nEmbd,
    nHead: o.heads ?? base.nHead,
    nInner: o.inner ?? 4 * nEmbd,
    nPositions: o.positions ?? (o.size ? 1024 : 128),
    vocabSize,
    numLabels: o.labels ?? 2,
    padTokenId: vocabSize - 1,
  });
  if (config.nEmbd % config.nHead !== 0) throw new Error(`--embd ${config.nEmbd} must be divisible by --heads ${config.nHead}`);
  return initModel(config, { seed: o.seed ?? 0 });
}
