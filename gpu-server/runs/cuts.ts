/**
 * Each device's cut from its capacity profile: the deepest k in [0, n_layer - 1] whose prefix fits the device's
 * memory and whose forward pass of one batch fits its time budget (at least one block stays on the server, where
 * LoRA trains). Memory is estimated conservatively from what was measured of onnxruntime-web (docs/stack.md):
 *   session   = 3 x the prefix's weight bytes (the model bytes, the initializers, prepacked copies)
 *   activations = 2 x 4 bytes x B x T x max(inner, heads x T) (the MLP's hidden layer or the attention scores, twice)
 *   runtime   = 24 MB (onnxruntime-web's WebAssembly and the worker's code)
 * int8 prefixes keep the token table outside the session (the device holds only its shard's rows).
 */
import { familyOf, blockLinearWeights, type ModelConfig } from '../../core/model/family.ts';
import { flopsPerToken } from '../../core/flops/flops.ts';
import type { CapacityProfile } from './spec.ts';

const RUNTIME_MB = 24;
const MB = 2 ** 20;

export interface CutEstimate {
  cut: number;
  memoryMB: number;
  batchSeconds: number;
}

export function prefixEstimate(c: ModelConfig, cut: number, profile: Pick<CapacityProfile, 'weights' | 'gflops'>, batch: number, seq: number): CutEstimate {
  const blockParams = blockLinearWeights(c);
  const bytesPerWeight = profile.weights === 'int8' ? 1 : 4;
  const tokenTable = profile.weights === 'int8' ? 0 : c.vocabSize * c.nEmbd * 4;
  const positionTable = familyOf(c).learnedPositions ? c.nPositions * c.nEmbd * 4 : 0; // rotary embeddings have none
  const weights = tokenTable + positionTable + cut * blockParams * bytesPerWeight;
  const activations = cut > 0 ? 2 * 4 * batch * seq * Math.max(c.nInner, c.nHead * seq) : 0;
  const flops = flopsPerToken({ config: c, seqLen: seq, cut }).device.forward * batch * seq;
  return { cut, memoryMB: (3 * weights + activations) / MB + RUNTIME_MB, batchSeconds: flops / (profile.gflops * 1e9) };
}

export function planCut(c: ModelConfig, profile: CapacityProfile, batch: number, seq: number, device = 'device'): CutEstimate {
  let best: CutEstimate | undefined;
  for (let cut = 0; cut < c.nLayer; cut++) {
    const e = prefixEstimate(c, cut, profile, batch, seq);
    if (e.memoryMB > profile.memoryMB || e.batchSeconds > profile.maxBatchSeconds) break;
    best = e;
  }
  if (!best) {
    const e = prefixEstimate(c, 0, profile, batch, seq);
    throw new Error(
      `device ${device} cannot run even the embeddings: they need ~${e.memoryMB.toFixed(0)} MB, it has ${profile.memoryMB} MB` +
        (profile.weights === 'fp32' ? ' (int8 weights keep the token table out of the device memory)' : ''),
    );
  }
  return best;
}
