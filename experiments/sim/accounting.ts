/**
 * What each method costs a device and the server, from the FLOP accounting of core/flops (checked against a count of
 * the matrix multiplications actually run in experiments/sim/sim.test.ts) and from tensor sizes.
 * Device peak memory is an estimate (fp32): the weights the device holds, plus its activations (only the current
 * layer's for a forward-only device; every layer's, for a device that runs backward), plus LoRA state (weights,
 * gradients and two AdamW moments) where it trains.
 */
import { flopsPerToken, type PassFlops } from '../../core/flops/flops.ts';
import { familyOf, blockLinearWeights, linearInOut, type ModelConfig } from '../../core/model/family.ts';

export type MethodName = 'splitfrozen' | 'splitfrozen-parallel' | 'fedlora' | 'splitlora' | 'fedsgd' | 'fedprox' | 'scaffold' | 'centralized';
export const METHODS: MethodName[] = ['splitfrozen', 'fedlora', 'splitlora', 'splitfrozen-parallel', 'fedsgd', 'fedprox', 'scaffold', 'centralized'];

/** Methods in which each device trains LoRA on the whole model and the server averages (FedAvg and its variants). */
export function trainsWholeModel(m: MethodName): boolean {
  return m === 'fedlora' || m === 'fedsgd' || m === 'fedprox' || m === 'scaffold';
}

/** Methods whose trainer holds LoRA from the embeddings up (the device's blocks train too). */
export function trainsFromEmbeddings(m: MethodName): boolean {
  return trainsWholeModel(m) || m === 'splitlora';
}

export interface CostSetup {
  config: ModelConfig;
  cut: number;
  seqLen: number;
  batchSize: number;
  lora: { rank: number; targets: readonly string[] };
  /** Generation trains no head (the LM head stays frozen); classification trains its head. */
  generation?: boolean;
}

export interface MethodCosts {
  /** Per token the device processes. */
  device: PassFlops;
  server: PassFlops;
  devicePeakMemoryMB: number;
}

const MB = 2 ** 20;

function loraParams(s: CostSetup, layers: number): number {
  return layers * s.lora.targets.reduce((a, t) => a + s.lora.rank * linearInOut(s.config, t).reduce((x, y) => x + y, 0), 0);
}

/** A block's weights: its linears, and its norms (and GPT-2's biases) counted as 4 d. */
function blockParams(c: ModelConfig): number {
  return blockLinearWeights(c) + 4 * c.nEmbd;
}

export function methodCosts(method: MethodName, s: CostSetup): MethodCosts {
  const c = s.config;
  const tokens = s.batchSize * s.seqLen;
  const embeddings = (c.vocabSize + (familyOf(c).learnedPositions ? c.nPositions : 0)) * c.nEmbd;
  const layerActivations = tokens * Math.max(c.nInner, c.nHead * s.seqLen);
  const head = s.generation ? ({ head: 'lm', headTrainable: false } as const) : {};
  // Activations a backward pass keeps per block: inputs of the norms, linears, attention probabilities, MLP hidden.
  const storedPerBlock = tokens * (10 * c.nEmbd + 2 * c.nInner) + 2 * s.batchSize * c.nHead * s.seqLen * s.seqLen;
  const loraState = (layers: number) => 4 * loraParams(s, layers);
  const mem = (floats: number) => (4 * floats) / MB;
  switch (method) {
    // The centralized bound's rows reach the server through the same frozen prefix, run once.
    case 'splitfrozen':
    case 'splitfrozen-parallel':
    case 'centralized': {
      const f = flopsPerToken({ config: c, seqLen: s.seqLen, cut: s.cut, lora: { ...s.lora, from: s.cut }, ...head });
      return { device: f.device, server: f.server, devicePeakMemoryMB: mem(embeddings + s.cut * blockParams(c) + 2 * layerActivations) };
    }
    case 'splitlora': {
      const f = flopsPerToken({ config: c, seqLen: s.seqLen, cut: s.cut, lora: { ...s.lora, from: 0 }, ...head });
      return { device: f.device, server: f.server, devicePeakMemoryMB: mem(embeddings + s.cut * blockParams(c) + s.cut * storedPerBlock + loraState(s.cut)) };
    }
    case 'fedlora':
    case 'fedsgd':
    case 'fedprox':
    case 'scaffold': {
      // The whole model, head included, trains on the device; the server only averages.
      const f = flopsPerToken({ config: c, seqLen: s.seqLen, cut: c.nLayer, lora: { ...s.lora, from: 0 }, ...head });
      return {
        device: f.total,
        server: { forward: 0, backward: 0 },
        devicePeakMemoryMB: mem(embeddings + c.nLayer * blockParams(c) + c.nLayer * storedPerBlock + loraState(c.nLayer)),
      };
    }
  }
}

/** Bytes of LoRA adapters (and a classification head) on the wire, fp32. */
export function adapterBytes(s: CostSetup, layers: number): number {
  return 4 * (loraParams(s, layers) + (s.generation ? 0 : s.config.nEmbd * s.config.numLabels));
}
