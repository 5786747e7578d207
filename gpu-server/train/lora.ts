/**
 * LoRA adapters on GPT-2's frozen linears: y = x W + (dropout(x) A B) * alpha / r, with W in Conv1D layout [in, out],
 * A [in, r] and B [r, out]. Initialised as PEFT does (A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0), so training starts
 * from the base model exactly.
 */
import * as tf from '@tensorflow/tfjs';
import type { GPT2Config } from '../../core/model/config.ts';
import { BLOCK_LINEARS, linearShape, type BlockLinear } from '../../core/model/weights.ts';
import { Random } from '../../core/random.ts';
import type { LinearDelta } from '../model/gpt2.ts';

export interface LoraSpec {
  rank: number;
  alpha: number;
  dropout: number;
  targets: BlockLinear[];
  /** Adapters sit on blocks [from, n_layer): at or above the deepest cut of the run. */
  from: number;
}

export const loraKey = (layer: number, linear: BlockLinear) => `h.${layer}.${linear}`;

/**
 * (x A) B with every MatMul of its backward a plain 2-D one, as the WASM backend needs (see model/gpt2.ts): autodiff
 * would produce transposed MatMuls, 10-40x slower there. The explicit transposes are of rank-r matrices only.
 */
const lowRank = tf.customGrad((x, a, b, save) => {
  const xa = tf.matMul(x as tf.Tensor2D, a as tf.Tensor2D);
  (save as tf.GradSaveFunc)([x as tf.Tensor2D, a as tf.Tensor2D, b as tf.Tensor2D, xa]);
  return {
    value: tf.matMul(xa, b as tf.Tensor2D),
    gradFunc: (dy, [xs, as, bs, xas]) => {
      const dxa = tf.matMul(dy as tf.Tensor2D, tf.transpose(bs)); // [rows, r]
      const dxaT = tf.transpose(dxa); // [r, rows]
      return [tf.matMul(dxa, tf.transpose(as)), tf.transpose(tf.matMul(dxaT, xs)), tf.matMul(tf.transpose(xas), dy as tf.Tensor2D)];
    },
  };
}) as (x: tf.Tensor2D, a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;

export class LoraAdapters {
  readonly spec: LoraSpec;
  readonly scale: number;
  /** A [in, r] and B [r, out] per adapted linear, keyed `h.{layer}.{linear}`. */
  readonly a = new Map<string, tf.Variable<tf.Rank.R2>>();
  readonly b = new Map<string, tf.Variable<tf.Rank.R2>>();

  constructor(config: GPT2Config, spec: LoraSpec, seed: number) {
    if (!(spec.rank >= 1)) throw new Error(`LoRA rank must be at least 1, got ${spec.rank}`);
    if (spec.from < 0 || spec.from >= config.nLayer) throw new Error(`LoRA layers start at ${spec.from}, outside 0..${config.nLayer - 1}`);
    for (const t of spec.targets) if (!BLOCK_LINEARS.includes(t)) throw new Error(`unknown LoRA target '${t}': use ${BLOCK_LINEARS.join(', ')}`);
    this.spec = spec;
    this.scale = spec.alpha / spec.rank;
    const rng = new Random(seed);
    for (let layer = spec.from; layer < config.nLayer; layer++) {
      for (const linear of BLOCK_LINEARS.filter((t) => spec.targets.includes(t))) {
        const [inp, out] = linearShape(config, linear);
        const bound = 1 / Math.sqrt(inp);
        const a = Float32Array.from({ length: inp * spec.rank }, () => (2 * rng.uniform() - 1) * bound);
        this.a.set(loraKey(layer, linear), tf.variable(tf.tensor2d(a, [inp, spec.rank]), true));
        this.b.set(loraKey(layer, linear), tf.variable(tf.zeros([spec.rank, out]), true));
      }
    }
  }

  /** The hook TfGPT2 calls for each linear; dropout only in training, seeded per step for reproducible runs. */
  delta(training: boolean, seed = 0): LinearDelta {
    let call = 0;
    return (layer, linear, x) => {
      const a = this.a.get(loraKey(layer, linear));
      if (!a) return undefined;
      const input = training && this.spec.dropout > 0 ? tf.dropout(x, this.spec.dropout, undefined, seed * 1009 + call++) : x;
      return tf.mul(lowRank(input as tf.Tensor2D, a, this.b.get(loraKey(layer, linear))!), this.scale) as tf.Tensor2D;
    };
  }

  variables(): tf.Variable[] {
    return [...this.a.values(), ...this.b.values()];
  }

  dispose(): void {
    tf.dispose(this.variables());
  }
}
