/**
 * Differentiable steps of the server's GPT-2 whose gradients the WASM backend runs fast (docs/stack.md): only a plain
 * 2-D, non-transposed MatMul is fast there, so every MatMul of every backward pass below is one, with explicit
 * transposes where needed; and a step keeps for its backward only what that needs.
 */
import * as tf from '@tensorflow/tfjs';
import { IGNORE_INDEX } from '../../../core/data/generation.ts';
import { MASKED_SCORE } from '../../../core/model/masking.ts';

/** A linear layer whose weight never trains: y = x @ W + b, with dx = dy @ W^T as a plain MatMul too. */
export class FrozenLinear {
  readonly weight: tf.Tensor2D;
  private readonly weightT: tf.Tensor2D;
  private readonly bias: tf.Tensor1D | undefined;
  private readonly fn: (x: tf.Tensor2D) => tf.Tensor2D;

  constructor(weight: tf.Tensor2D, bias?: tf.Tensor1D, weightT?: tf.Tensor2D) {
    this.weight = weight;
    this.weightT = weightT ?? weight.transpose();
    this.bias = bias;
    this.fn = tf.customGrad((x) => ({
      value: this.bias ? tf.add(tf.matMul(x as tf.Tensor2D, this.weight), this.bias) : tf.matMul(x as tf.Tensor2D, this.weight),
      gradFunc: (dy) => tf.matMul(dy as tf.Tensor2D, this.weightT),
    })) as (x: tf.Tensor2D) => tf.Tensor2D;
  }

  /** x: [rows, in] -> [rows, out]. */
  apply(x: tf.Tensor2D): tf.Tensor2D {
    return this.fn(x);
  }

  /** dy [rows, out] -> dx [rows, in], for hand-written backward passes. */
  backward(dy: tf.Tensor2D): tf.Tensor2D {
    return tf.matMul(dy, this.weightT);
  }

  dispose(): void {
    tf.dispose([this.weight, this.weightT, this.bias].filter((t) => t !== undefined));
  }
}

/**
 * A linear layer whose weight and bias train (pretraining all weights): both directions stay plain 2-D MatMuls,
 * dx = dy W^T and dW = x^T dy with explicit transposes, which the WASM backend runs far faster than transposed
 * MatMuls.
 */
export class TrainableLinear {
  readonly weight: tf.Variable<tf.Rank.R2>;
  readonly bias: tf.Variable<tf.Rank.R1>;
  private readonly fn: (x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D) => tf.Tensor2D;

  constructor(weight: tf.Tensor2D, bias: tf.Tensor1D) {
    this.weight = tf.variable(weight);
    this.bias = tf.variable(bias);
    this.fn = tf.customGrad((x, w, b, save) => {
      (save as tf.GradSaveFunc)([x as tf.Tensor2D, w as tf.Tensor2D]);
      return {
        value: tf.add(tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D), b as tf.Tensor1D),
        gradFunc: (dy, [xs, ws]) => [tf.matMul(dy as tf.Tensor2D, tf.transpose(ws)), tf.matMul(tf.transpose(xs), dy as tf.Tensor2D), tf.sum(dy, 0)],
      };
    }) as (x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D) => tf.Tensor2D;
  }

  apply(x: tf.Tensor2D): tf.Tensor2D {
    return this.fn(x, this.weight, this.bias);
  }

  dispose(): void {
    tf.dispose([this.weight, this.bias]);
  }
}

export type Linear = FrozenLinear | TrainableLinear;

/**
 * Rows of a table (embeddings) whose gradient scatters the rows' gradients back, summing repeated ids (ScatterNd):
 * the WASM backend has no kernel for gather's own gradient (UnsortedSegmentSum).
 */
export const gatherRows = tf.customGrad((table, idx, save) => {
  (save as tf.GradSaveFunc)([idx as tf.Tensor]);
  const [rows, d] = (table as tf.Tensor2D).shape;
  return {
    value: tf.gather(table as tf.Tensor2D, idx as tf.Tensor),
    gradFunc: (dy, [ids]) => [tf.scatterND(ids.reshape([-1, 1]), dy.reshape([-1, d]), [rows, d]), tf.zerosLike(ids)],
  };
}) as (table: tf.Tensor2D, idx: tf.Tensor) => tf.Tensor;

/** Logits of the tied LM head, x wte^T, with dwte = dy^T x as a plain MatMul. */
export const tiedLogits = tf.customGrad((x, wte, save) => {
  (save as tf.GradSaveFunc)([x as tf.Tensor2D, wte as tf.Tensor2D]);
  return {
    value: tf.matMul(x as tf.Tensor2D, tf.transpose(wte as tf.Tensor2D)),
    gradFunc: (dy, [xs, ws]) => [tf.matMul(dy as tf.Tensor2D, ws), tf.matMul(tf.transpose(dy as tf.Tensor2D), xs)],
  };
}) as (x: tf.Tensor2D, wte: tf.Tensor2D) => tf.Tensor2D;

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/**
 * GPT-2's GELU (tanh approximation) as one differentiable step that keeps only its input for the backward pass:
 * written as plain ops, autodiff would keep half a dozen tensors of the MLP's width alive per block, which at GPT-2
 * small's size is most of the tape. 0.5 x (1 + tanh u) is computed as x sigmoid(2u), and x^3 as x * x * x: the WASM
 * backend's Tanh and Pow are scalar loops, ten times slower than its Sigmoid and Multiply.
 */
export const gelu = tf.customGrad((x, save) => {
  (save as tf.GradSaveFunc)([x as tf.Tensor]);
  return { value: tf.mul(x as tf.Tensor, geluSigmoid(x as tf.Tensor)), gradFunc: (dy, [xs]) => geluBackward(xs as tf.Tensor2D, dy as tf.Tensor2D) };
}) as (x: tf.Tensor2D) => tf.Tensor2D;

/** sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): gelu(x) = x sigmoid(2u). */
function geluSigmoid(x: tf.Tensor): tf.Tensor {
  return tf.sigmoid(tf.mul(tf.add(x, tf.mul(tf.mul(tf.mul(x, x), x), 0.044715)), 2 * SQRT_2_OVER_PI));
}

/** d gelu(x) / dx * dy = (s + x s (1 - s) 2u') dy, with s = sigmoid(2u) and u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2). */
export function geluBackward(x: tf.Tensor2D, dy: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const s = geluSigmoid(x);
    const du2 = tf.mul(tf.add(1, tf.mul(tf.square(x), 3 * 0.044715)), 2 * SQRT_2_OVER_PI);
    return tf.mul(dy, tf.add(s, tf.mul(tf.mul(tf.mul(x, s), tf.sub(1, s)), du2)));
  });
}

/**
 * (x A) B, the low-rank term of LoRA, A [in, r] and B [r, out]: autodiff would make transposed MatMuls of its
 * backward; here the explicit transposes are of rank-r matrices only.
 */
export const lowRank = tf.customGrad((x, a, b, save) => {
  const xa = tf.matMul(x as tf.Tensor2D, a as tf.Tensor2D);
  (save as tf.GradSaveFunc)([x as tf.Tensor2D, a as tf.Tensor2D, b as tf.Tensor2D, xa]);
  return {
    value: tf.matMul(xa, b as tf.Tensor2D),
    gradFunc: (dy, [xs, as, bs, xas]) =>
      tf.tidy(() => {
        const { dxa, da, db } = lowRankBackward(xs as tf.Tensor2D, bs as tf.Tensor2D, xas as tf.Tensor2D, dy as tf.Tensor2D);
        return [tf.matMul(dxa, tf.transpose(as as tf.Tensor2D)), da, db];
      }),
  };
}) as (x: tf.Tensor2D, a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;

/** Gradients of (x A) B given x A and dy: dA, dB, and d(x A), from which dx = d(x A) A^T where it is needed. */
export function lowRankBackward(x: tf.Tensor2D, b: tf.Tensor2D, xa: tf.Tensor2D, dy: tf.Tensor2D): { dxa: tf.Tensor2D; da: tf.Tensor2D; db: tf.Tensor2D } {
  const dxa = tf.matMul(dy, tf.transpose(b)) as tf.Tensor2D; // [rows, r]
  return { dxa, da: tf.transpose(tf.matMul(tf.transpose(dxa), x)) as tf.Tensor2D, db: tf.matMul(tf.transpose(xa), dy) as tf.Tensor2D };
}

/** A layer norm's input normalised, and 1 / its standard deviation per row. */
export interface Normalized {
  xhat: tf.Tensor2D;
  rstd: tf.Tensor2D;
}

/**
 * Layer norm split in two: x -> (xhat, rstd) with xhat = (x - mean) rstd; the affine part stays with the caller.
 * normalizeBackward takes d xhat to dx.
 */
export function normalize(x: tf.Tensor2D, epsilon: number): Normalized {
  const { mean, variance } = tf.moments(x, -1, true);
  const rstd = tf.rsqrt(tf.add(variance, epsilon)) as tf.Tensor2D;
  return { xhat: tf.mul(tf.sub(x, mean), rstd), rstd };
}

export function normalizeBackward(dxhat: tf.Tensor2D, xhat: tf.Tensor2D, rstd: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.mul(rstd, tf.sub(tf.sub(dxhat, tf.mean(dxhat, -1, true)), tf.mul(xhat, tf.mean(tf.mul(dxhat, xhat), -1, true)))));
}

/**
 * The attention mask as every block applies it: scores = (q k^T) * scale + fill, where scale is 1/sqrt(head_dim) for
 * a key the query may see and 0 otherwise, and fill is 0 or MASKED_SCORE, which so replaces a hidden score exactly.
 * Both at the scores' full shape [B, H, queries, keys], built once per forward: broadcasting inside each block would
 * tile them there, which on the WASM backend costs more than the attention itself.
 */
export interface AttentionMask {
  scale: tf.Tensor4D;
  fill: tf.Tensor4D;
}

/**
 * `mask` [B, keys] marks real keys; the last `queries` keys are the queries' own positions (earlier ones: a KV
 * cache), so query i sees key j when j <= keys - queries + i.
 */
export function attentionMask(mask: tf.Tensor2D, heads: number, headDim: number, queries = mask.shape[1]): AttentionMask {
  return tf.tidy(() => {
    const [B, K] = mask.shape;
    const keys = tf.range(0, K, 1, 'int32').reshape([1, 1, 1, K]);
    const causal = tf.cast(tf.lessEqual(keys, tf.range(K - queries, K, 1, 'int32').reshape([1, 1, queries, 1])), 'float32'); // [query i, key j]
    // Broadcast by Multiply: the WASM backend's broadcasting LogicalAnd and Tile are scalar loops.
    const seen = tf.mul(tf.mul(causal, tf.cast(mask, 'float32').reshape([B, 1, 1, K])), tf.ones([1, heads, 1, 1])) as tf.Tensor4D;
    return { scale: tf.mul(seen, 1 / Math.sqrt(headDim)) as tf.Tensor4D, fill: tf.mul(tf.sub(1, seen), MASKED_SCORE) as tf.Tensor4D };
  });
}

/** LoRA on one frozen linear: y += (keep * x) A B * scale, A [in, r], B [r, out]; keep: the dropout multiplier [rows, in]. */
export interface LinearAdapter {
  a: tf.Tensor2D;
  b: tf.Tensor2D;
  scale: number;
  keep?: tf.Tensor2D;
}

/** A block's adapters by linear (none: no adapter there). */
export type BlockAdapters = Partial<Record<string, LinearAdapter>>;

/** The adapters of block `layer` for a batch of `rows` rows (GPT-2 and Llama alike). */
export type Adapters = (layer: number, rows: number) => BlockAdapters;

/** The adapter's input, times its dropout multiplier if it has one (and the same for the gradient). */
export function dropout(x: tf.Tensor2D, keep?: tf.Tensor2D): tf.Tensor2D {
  return keep ? tf.mul(x, keep) : x;
}

/** The positions of a causal-LM batch that carry a label (not IGNORE_INDEX): the only ones the LM head sees. */
export function labelledPositions(labels: Int32Array): number[] {
  const picked = labels.reduce<number[]>((acc, label, r) => (label === IGNORE_INDEX ? acc : (acc.push(r), acc)), []);
  if (picked.length === 0) throw new Error('the batch has no labelled tokens (every label is IGNORE_INDEX)');
  return picked;
}

/**
 * The rows of final hidden states [B, T, d] that carry a label (not IGNORE_INDEX), [N, d], and their labels: only
 * those reach the LM head. A one-hot MatMul picks them, since gather's gradient has no WASM kernel.
 */
export function labelledRows(final: tf.Tensor3D, labels: Int32Array): { rows: tf.Tensor2D; targets: Int32Array } {
  const [B, T, d] = final.shape;
  if (labels.length !== B * T) throw new Error(`${labels.length} token labels for a batch of ${B} x ${T}`);
  const picked = labelledPositions(labels);
  const pick = tf.tidy(() => tf.oneHot(tf.tensor1d(picked, 'int32'), B * T));
  return { rows: tf.matMul(pick, final.reshape([B * T, d])), targets: Int32Array.from(picked, (r) => labels[r]!) };
}

/**
 * Mean next-token cross-entropy over rows h [N, d] (final-normed hidden states) and labels [N] through an LM head
 * given both ways, headT [d, V] and head [V, d] (two plain MatMuls). The [N, V] logits are made `chunk` rows at a
 * time, forward and again in the backward pass, so Llama's 128,256-token vocabulary never needs N x V floats at once.
 */
export function chunkedLmLoss(h: tf.Tensor2D, headT: tf.Tensor2D, head: tf.Tensor2D, labels: Int32Array, chunk = 64): tf.Scalar {
  const [N] = h.shape;
  if (labels.length !== N) throw new Error(`${labels.length} labels for ${N} rows`);
  const parts = (x: tf.Tensor2D) =>
    Array.from({ length: Math.ceil(N / chunk) }, (_, i) => [i * chunk, Math.min(chunk, N - i * chunk)] as const).map(([at, n]) => ({
      at,
      n,
      x: tf.slice(x, [at, 0], [n, -1]) as tf.Tensor2D,
    }));
  const oneHot = (at: number, n: number) => tf.oneHot(tf.tensor1d(labels.subarray(at, at + n), 'int32'), head.shape[0]);
  const fn = tf.customGrad((x, save) => {
    (save as tf.GradSaveFunc)([x as tf.Tensor2D]);
    const value = tf.tidy(() => {
      let total: tf.Tensor = tf.scalar(0);
      for (const { at, n, x: rows } of parts(x as tf.Tensor2D)) {
        const logits = tf.matMul(rows, headT);
        total = tf.add(total, tf.sum(tf.sub(tf.logSumExp(logits, 1), tf.sum(tf.mul(logits, oneHot(at, n)), 1))));
      }
      return tf.div(total, N) as tf.Scalar;
    });
    return {
      value,
      gradFunc: (dy, [xs]) =>
        tf.tidy(() => {
          const scale = tf.div(dy, N);
          return tf.concat(
            parts(xs as tf.Tensor2D).map(({ at, n, x: rows }) => tf.mul(tf.matMul(tf.sub(tf.softmax(tf.matMul(rows, headT)), oneHot(at, n)), head), scale)),
          );
        }),
    };
  }) as (x: tf.Tensor2D) => tf.Scalar;
  return fn(h);
}

/** Position ids [B, T] of a padded batch: real tokens counted, max(cumsum(mask) - 1, 0) (core/model/masking.ts). */
export function positionIds(mask: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.maximum(tf.sub(tf.cumsum(tf.cast(mask, 'int32'), 1), tf.scalar(1, 'int32')), tf.scalar(0, 'int32')) as tf.Tensor2D);
}

/**
 * Each row's last real token of hidden states [B, T, d] -> [B, d]: argmax over t of (mask * T + t), so a row without
 * real tokens gives t = T - 1. A one-hot sum rather than gather, whose gradient the WASM backend lacks.
 */
export function lastTokens(hidden: tf.Tensor3D, mask: tf.Tensor2D): tf.Tensor2D {
  const [B, T] = hidden.shape;
  return tf.tidy(() => {
    const t = tf.range(0, T, 1, 'int32').reshape([1, T]);
    const last = tf.argMax(tf.add(tf.mul(tf.cast(mask, 'int32'), tf.scalar(T, 'int32')), t), 1);
    return tf.sum(tf.mul(hidden, tf.oneHot(last, T).reshape([B, T, 1])), 1) as tf.Tensor2D;
  });
}
