/**
 * What a curious server can read back from activations at a cut: a nearest-neighbour inversion attack. The attacker
 * runs the same frozen prefix (the server holds the model) on text it has, keeping each position's hidden state with
 * its token; every hidden state it then receives takes the token of the nearest of those (cosine similarity). The
 * recovery rate is the share of real tokens it gets right. A lower bound on what a stronger attack could do: it
 * recovers only tokens its own text contains.
 */

export interface Reference {
  /** [n, d] hidden states at the cut, one per real token of the attacker's text. */
  vectors: Float32Array;
  tokens: Int32Array;
  d: number;
}

function normalized(vectors: Float32Array, d: number): Float32Array {
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

/** Share of positions where the guess equals the real token. */
export function recoveryRate(guessed: ArrayLike<number>, actual: ArrayLike<number>): number {
  if (guessed.length !== actual.length) throw new Error(`${guessed.length} guesses for ${actual.length} tokens`);
  let hits = 0;
  for (let i = 0; i < actual.length; i++) if (guessed[i] === actual[i]) hits++;
  return actual.length ? hits / actual.length : 0;
}

/** The rate of always guessing the attacker's most frequent token: what recovery means nothing below. */
export function majorityRate(reference: Reference, actual: ArrayLike<number>): number {
  const counts = new Map<number, number>();
  for (const t of reference.tokens) counts.set(t, (counts.get(t) ?? 0) + 1);
  const top = [...counts].reduce((a, b) => (b[1] > a[1] ? b : a), [0, 0])[0];
  return recoveryRate(Array.from(actual, () => top), actual);
}
