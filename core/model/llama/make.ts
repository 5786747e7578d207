/** A randomly initialised Llama of a given shape (make-model, tests' fixtures): Llama 3's vocabulary and rope scaling. */
import type { ShapeOptions } from '../shape.ts';
import { sizeOf } from '../shape.ts';
import { llamaConfig, LLAMA_SIZES, TINY_LLAMA } from './config.ts';
import { initLlama } from './init.ts';
import type { LlamaModel } from './weights.ts';

export function makeLlama(o: ShapeOptions): LlamaModel {
  if (o.vocab !== undefined) throw new Error("--vocab is fixed for --arch llama: Llama 3's tokenizer has 128256 tokens");
  const base = o.size ? { ...sizeOf(LLAMA_SIZES, o.size), nPositions: 131072 } : TINY_LLAMA;
  const nEmbd = o.embd ?? base.nEmbd;
  const nHead = o.heads ?? base.nHead;
  const nKvHead = o.kvHeads ?? base.nKvHead;
  if (nEmbd % nHead !== 0) throw new Error(`--embd ${nEmbd} must be divisible by --heads ${nHead}`);
  if (nHead % nKvHead !== 0) throw new Error(`--heads ${nHead} must be a multiple of --kv-heads ${nKvHead}`);
  if ((nEmbd / nHead) % 2 !== 0) throw new Error(`the head size (--embd / --heads = ${nEmbd / nHead}) must be even for rotary embeddings`);
  const config = llamaConfig({
    nLayer: o.layers ?? base.nLayer,
    nEmbd,
    nHead,
    nKvHead,
    headDim: nEmbd / nHead,
    nInner: o.inner ?? base.nInner,
    nPositions: o.positions ?? base.nPositions,
    numLabels: o.labels ?? 2,
  });
  return initLlama(config, { seed: o.seed ?? 0 });
}
