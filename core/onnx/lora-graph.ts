/** LoRA in the block graphs of every family: its spec, and a linear's forward and backward around the frozen product. */
import type { GraphBuilder } from './graph.ts';

export interface LoraGraphSpec {
  /** The adapted linears, and LoRA's rank and scale (alpha / rank). */
  targets: readonly string[];
  rank: number;
  scale: number;
  /** Dropout on the adapters' input: its multiplier [B*T, in] is a graph input per adapted linear. */
  dropout: boolean;
}

const keep = (g: GraphBuilder, spec: LoraGraphSpec, x: string, name: string) => (spec.dropout ? g.op('Mul', [x, `${name}.keep`]) : x);

/** y = frozen + ((keep x) A) B scale, the low-rank term added through Gemm's C; x A goes into `saved` for the backward. */
export function loraForward(g: GraphBuilder, spec: LoraGraphSpec, name: string, input: string, frozen: string, saved: Record<string, string>): string {
  if (!spec.targets.includes(name)) return frozen;
  const xa = g.op('MatMul', [keep(g, spec, input, name), `${name}.lora_A`]);
  saved[`${name}.xa`] = xa;
  return g.op('Gemm', [xa, `${name}.lora_B`, frozen], { alpha: spec.scale, beta: 1 });
}

/**
 * A linear's backward from dout [N, out]: its adapter's gradients into `outputs` (the input recomputed by `input`,
 * x A read from the forward's saved tensors), and dx: the frozen product's `dx` (undefined when not needed) plus the
 * low-rank term's.
 */
export function loraBackward(
  g: GraphBuilder,
  spec: LoraGraphSpec,
  name: string,
  dout: string,
  dx: string | undefined,
  input: () => string,
  outputs: Array<{ name: string; from: string }>,
): string | undefined {
  if (!spec.targets.includes(name)) return dx;
  const dxa = g.op('Gemm', [dout, `${name}.lora_B`], { transB: 1, alpha: spec.scale });
  outputs.push(
    { name: `${name}.lora_A.grad`, from: g.op('Gemm', [keep(g, spec, input(), name), dxa], { transA: 1 }) },
    { name: `${name}.lora_B.grad`, from: g.op('Gemm', [`saved.${name}.xa`, dout], { transA: 1, alpha: spec.scale }) },
  );
  if (!dx) return undefined;
  if (!spec.dropout) return g.op('Gemm', [dxa, `${name}.lora_A`, dx], { transB: 1, beta: 1 });
  return g.op('Add', [dx, g.op('Mul', [g.op('Gemm', [dxa, `${name}.lora_A`], { transB: 1 }), `${name}.keep`])]);
}
