/**
 * The nearest-neighbour inversion attack: the attacker runs the same frozen prefix (the server holds the model) on
 * public text, keeping each position's hidden state with its token; every hidden state it receives takes the token of
 * the most similar of those (cosine similarity). The weakest attack of the suite: it recovers only tokens its own
 * text contains.
 */
import type { Activations } from './activations.ts';

export interface Reference {
  /** [n, d] hidden states at the cut, one per real token of the attacker's text. */
  vectors: Float32Array;
  tokens: Int32Array;
  d: number;
}

export function normalized(vectors: Float32Array, d: number): Float32Array {
  const out = new Float32Array(vectors.length);
  for (let i = 0; i < vectors.length; i += d) {
    let norm = 0;
    for (let k = 0; k < d; k++) norm += vectors[i + k] * vectors[i + k];
    const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let k = 0; k < d; k++) out[i + k] = vectors[i + k] * scale;
  }
  return out;
}

/** For each [d] query vector, the token of its nearest reference vector by cosine similarity (ties: the first). */
export function nearestTokens(reference: Reference, queries: Float32Array): Int32Array {
  const { d } = reference;
  const refs = normalized(reference.vectors, d);
  const qs = normalized(queries, d);
  const n = refs.length / d;
  const out = new Int32Array(qs.length / d);
  for (let q = 0; q < out.length; q++) {
    let best = -Infinity;
    let bestRow = 0;
    for (let r = 0; r < n; r++) {
      let dot = 0;
      for (let k = 0; k < d; k++) dot += qs[q * d + k] * refs[r * d + k];
      if (dot > best) [best, bestRow] = [dot, r];
    }
    out[q] = reference.tokens[bestRow];
  }
  return out;
}

/** The attack on a batch: a guess per position, -1 on padding. */
export function nearestAttack(received: Activations, reference: Reference): Int32Array {
  const guesses = nearestTokens(reference, received.hidden);
  for (let i = 0; i < guesses.length; i++) if (!received.mask[i]) guesses[i] = -1;
  return guesses;
}
