/**
 * Learned inversion (BiSR's learning-based step; the inversion models of VFLAIR-LLM), as a linear decoder: ridge
 * regression from a received hidden state to its token, trained on the attacker's public text run through the prefix
 * and the defence (with noise of the attacker's own drawing), so it learns to undo what of the defence can be undone.
 */
import type { Activations } from './activations.ts';
import type { Reference } from './nearest.ts';

export interface Decoder {
  vocabulary: Int32Array;
  /** [d + 1, vocabulary] weights, the last row the bias. */
  weights: Float64Array;
  d: number;
}

/** Fits the decoder on (defended hidden state, token) pairs: (X^T X + lambda I) W = X^T Y, Y one-hot. */
export function trainDecoder(train: Reference, lambda = 1e-3): Decoder {
  const { d, tokens, vectors } = train;
  const vocabulary = Int32Array.from(new Set(tokens)).sort();
  const column = new Map(Array.from(vocabulary, (t, i) => [t, i]));
  const [m, v, n] = [d + 1, vocabulary.length, tokens.length];
  const gram = new Float64Array(m * m);
  const xty = new Float64Array(m * v);
  const x = new Float64Array(m);
  let trace = 0;
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < d; k++) x[k] = vectors[i * d + k];
    x[d] = 1;
    for (let a = 0; a < m; a++) for (let b = 0; b <= a; b++) gram[a * m + b] += x[a] * x[b];
    const c = column.get(tokens[i])!;
    for (let a = 0; a < m; a++) xty[a * v + c] += x[a];
  }
  for (let a = 0; a < m; a++) trace += gram[a * m + a];
  // Ridge relative to the features' scale, so lambda means the same for any hidden-state size.
  for (let a = 0; a < m; a++) gram[a * m + a] += (lambda * trace) / m;
  return { vocabulary, weights: choleskySolve(gram, xty, m, v), d };
}

/** The decoder's guess per position (-1 on padding). */
export function decode(decoder: Decoder, received: Activations): Int32Array {
  const { weights, vocabulary, d } = decoder;
  const v = vocabulary.length;
  const guesses = new Int32Array(received.rows * received.seq).fill(-1);
  const scores = new Float64Array(v);
  for (let p = 0; p < guesses.length; p++) {
    if (!received.mask[p]) continue;
    scores.set(weights.subarray(d * v, (d + 1) * v));
    for (let k = 0; k < d; k++) {
      const xk = received.hidden[p * d + k];
      for (let c = 0; c < v; c++) scores[c] += xk * weights[k * v + c];
    }
    let best = 0;
    for (let c = 1; c < v; c++) if (scores[c] > scores[best]) best = c;
    guesses[p] = vocabulary[best];
  }
  return guesses;
}

/** Solves A X = B for symmetric positive definite A [m, m] (lower triangle filled) and B [m, k]. */
export function choleskySolve(a: Float64Array, b: Float64Array, m: number, k: number): Float64Array {
  const l = new Float64Array(m * m);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * m + j];
      for (let q = 0; q < j; q++) s -= l[i * m + q] * l[j * m + q];
      if (i === j) {
        if (!(s > 0)) throw new Error('cholesky: the matrix is not positive definite');
        l[i * m + i] = Math.sqrt(s);
      } else l[i * m + j] = s / l[j * m + j];
    }
  }
  const x = Float64Array.from(b);
  for (let c = 0; c < k; c++) {
    for (let i = 0; i < m; i++) {
      let s = x[i * k + c];
      for (let q = 0; q < i; q++) s -= l[i * m + q] * x[q * k + c];
      x[i * k + c] = s / l[i * m + i];
    }
    for (let i = m - 1; i >= 0; i--) {
      let s = x[i * k + c];
      for (let q = i + 1; q < m; q++) s -= l[q * m + i] * x[q * k + c];
      x[i * k + c] = s / l[i * m + i];
    }
  }
  return x;
}
