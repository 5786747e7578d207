/** What a family's prefix blocks need from the graph around them (core/onnx/prefix.ts builds it). */
import type { GraphBuilder } from './graph.ts';

/** How the prefix stores its weights: float32, or int8 with per-column (linears) and per-row (token table) scales. */
export type PrefixWeights = 'fp32' | 'int8';

export interface PrefixContext {
  g: GraphBuilder;
  /** A float32 parameter of the model as an initializer. */
  f32(name: string, dims: number[]): string;
  /** x @ W (+ bias) with W given as [in, out], in the prefix's weight format; `name` names the initializers. */
  linear(x: string, name: string, w: Float32Array, inp: number, out: number, bias?: Float32Array): string;
  /** Position ids [B, T]: real tokens counted, max(cumsum(mask) - 1, 0). */
  positions: string;
  /** allowed[b, 0, i, j] = j <= i and mask[b, j], bool [B, 1, T, T]. */
  allowed: string;
}
