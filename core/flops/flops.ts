/**
 * FLOP accounting for split training of any family (GPT-2, Llama): forward and backward FLOPs per token, block by block, for a cut,
 * LoRA placement and sequence length. Counts the matrix multiplications (2 FLOPs per multiply-add); norms, softmax,
 * activations, rotary embeddings and residual adds are O(d) per token and left out (under 1% at these sizes). Attention is counted
 * as computed, over the full T x T score matrix.
 *
 * Backward counts only what training needs: a frozen op computes its input gradient only when some trainable
 * parameter lies upstream of it, and nothing below the lowest trainable op runs backward at all. So with LoRA on
 * blocks at or above the cut (SplitFrozen) devices have no backward FLOPs; with LoRA on device blocks (SplitLoRA)
 * they do.
 */
import { blockMatmuls, type ModelConfig } from '../model/family.ts';

export interface LoraPlacement {
  rank: number;
  /** Linears that carry adapters, by module path: ['attn.c_attn'], ['self_attn.q_proj', 'self_attn.v_proj']. */
  targets: readonly string[];
  /** Blocks [from, to) that carry adapters; by default every block. */
  from?: number;
  to?: number;
}

export interface FlopOptions {
  config: ModelConfig;
  seqLen: number;
  /** Blocks [0, cut) run on the device, [cut, n) and the head on the server. */
  cut: number;
  /** No LoRA: nothing trains but the head (when headTrainable). */
  lora?: LoraPlacement;
  head?: 'classification' | 'lm';
  /** Whether the head's weights train (the classification head does in SplitFrozen). */
  headTrainable?: boolean;
}

export interface PassFlops {
  forward: number;
  backward: number;
}

export interface FlopReport {
  /** Per token, for each block in order. */
  blocks: Array<PassFlops & { layer: number; side: 'device' | 'server' }>;
  head: PassFlops;
  device: PassFlops;
  server: PassFlops;
  total: PassFlops;
}

interface Op {
  forward: number;
  /** Backward cost of the input gradient(s) of the op. */
  inputGrad: number;
  /** Backward cost of the op's own trainable parameters (LoRA, head), 0 when frozen. */
  paramGrad: number;
}

function linearOp(inp: number, out: number, rank: number): Op {
  if (rank === 0) return { forward: 2 * inp * out, inputGrad: 2 * inp * out, paramGrad: 0 };
  // y = x W + (x A) B: the adapter adds 2r(in + out) forward; backward computes dB, d(xA), dA, and dx through A.
  return {
    forward: 2 * inp * out + 2 * rank * (inp + out),
    inputGrad: 2 * inp * out + 2 * rank * inp,
    paramGrad: 2 * rank * out + 2 * rank * out + 2 * rank * inp,
  };
}

function blockOps(c: ModelConfig, T: number, rankOf: (linear: string) => number): Op[] {
  // q k^T and probs v: each 2 T width per token forward, and each has two activation operands to differentiate.
  return blockMatmuls(c).map((m) =>
    'attention' in m ? { forward: 2 * T * m.attention, inputGrad: 4 * T * m.attention, paramGrad: 0 } : linearOp(m.inp, m.out, rankOf(m.linear)),
  );
}

export function flopsPerToken({
  config: c,
  seqLen: T,
  cut,
  lora,
  head = 'classification',
  headTrainable = head === 'classification',
}: FlopOptions): FlopReport {
  if (!Number.isInteger(cut) || cut < 0 || cut > c.nLayer) throw new RangeError(`cut ${cut} is outside 0..${c.nLayer}`);
  const hasLora = (layer: number) => !!lora && layer >= (lora.from ?? 0) && layer < (lora.to ?? c.nLayer);
  const chain: Array<{ layer: number; ops: Op[] }> = [];
  for (let layer = 0; layer < c.nLayer; layer++) {
    chain.push({ layer, ops: blockOps(c, T, (name) => (hasLora(layer) && lora!.targets.includes(name) ? lora!.rank : 0)) });
  }
  // The head: classification reads one pooled token per sequence, so per token it costs 1/T of a linear.
  const headOp =
    head === 'lm'
      ? { ...linearOp(c.nEmbd, c.vocabSize, 0), paramGrad: 0 }
      : {
          forward: (2 * c.nEmbd * c.numLabels) / T,
          inputGrad: (2 * c.nEmbd * c.numLabels) / T,
          paramGrad: headTrainable ? (2 * c.nEmbd * c.numLabels) / T : 0,
        };
  if (head === 'lm' && headTrainable) throw new Error('the tied LM head is frozen here: set headTrainable false');
  chain.push({ layer: c.nLayer, ops: [headOp] });

  let trainableUpstream = false;
  const passes = chain.map(({ layer, ops }) => {
    let forward = 0;
    let backward = 0;
    for (const op of ops) {
      forward += op.forward;
      if (trainableUpstream) backward += op.inputGrad;
      backward += op.paramGrad;
      if (op.paramGrad > 0) trainableUpstream = true;
    }
    return { layer, forward, backward };
  });
  const blocks = passes.slice(0, c.nLayer).map((p) => ({ ...p, side: p.layer < cut ? ('device' as const) : ('server' as const) }));
  const sum = (xs: PassFlops[]): PassFlops => ({ forward: xs.reduce((a, x) => a + x.forward, 0), backward: xs.reduce((a, x) => a + x.backward, 0) });
  const headPass = passes[c.nLayer];
  const device = sum(blocks.filter((b) => b.side === 'device'));
  const server = sum([...blocks.filter((b) => b.side === 'server'), headPass]);
  return { blocks, head: { forward: headPass.forward, backward: headPass.backward }, device, server, total: sum([device, server]) };
}
