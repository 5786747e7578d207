/**
 * Token sanitisation before the prefix (SanText, Yue et al. 2021): each token x is replaced by a token y of the
 * candidate vocabulary with probability proportional to exp(-epsilon * dist(x, y) / 2), dist the Euclidean distance
 * between their input embeddings over the candidates' mean pairwise distance. That is epsilon-metric-LDP per token:
 * what any attack then recovers is the sanitised text, and an original token survives with the probability the
 * mechanism keeps it. The draws are derived like the noise (stream.ts), so a re-upload sanitises alike.
 */
import { positionSeeds, SeededStream } from './stream.ts';
import { rowLength } from './attacks/activations.ts';

export interface Candidates {
  tokens: Int32Array;
  /** A token's input embedding (the model's token table row). */
  embedding: (token: number) => Float32Array;
  /** Tokens never replaced (start and end tokens: public, the same in every row). */
  keep: ReadonlySet<number>;
}

/** The candidates' mean pairwise distance: the unit epsilon's distances are measured in. */
function meanDistance(c: Candidates): number {
  const rows = Array.from(c.tokens, (t) => c.embedding(t));
  let [sum, pairs] = [0, 0];
  for (let i = 0; i < rows.length; i++) for (let j = i + 1; j < rows.length; j++, pairs++) sum += distance(rows[i], rows[j]);
  return pairs ? sum / pairs : 1;
}

function distance(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let k = 0; k < a.length; k++) s += (a[k] - b[k]) ** 2;
  return Math.sqrt(s);
}

/** The sanitiser for a vocabulary and epsilon; its result maps a batch's ids [rows, seq] (with mask) to sanitised ids. */
export function sanitiser(
  c: Candidates,
  epsilon: number,
  key: Uint8Array,
  context: Uint8Array,
): (ids: Int32Array, mask: ArrayLike<number>, rows: number, seq: number) => Int32Array {
  const unit = meanDistance(c);
  const table = Array.from(c.tokens, (t) => c.embedding(t));
  const cdfs = new Map<number, Float64Array>();
  const cdf = (x: number) => {
    let out = cdfs.get(x);
    if (!out) {
      const e = c.embedding(x);
      const logits = table.map((row) => (-epsilon * distance(e, row)) / unit / 2);
      const top = Math.max(...logits);
      out = new Float64Array(logits.length);
      let total = 0;
      logits.forEach((l, i) => (out![i] = total += Math.exp(l - top)));
      for (let i = 0; i < out.length; i++) out[i] /= total;
      cdfs.set(x, out);
    }
    return out;
  };
  const stream = new SeededStream(key, 1);
  return (ids, mask, rows, seq) => {
    const out = Int32Array.from(ids);
    for (let r = 0; r < rows; r++) {
      const length = rowLength(mask, r, seq);
      const seeds = positionSeeds(key, context, ids.subarray(r * seq, r * seq + length), length);
      for (let p = 0; p < length; p++) {
        const x = ids[r * seq + p];
        if (c.keep.has(x)) continue;
        const u = stream.reset(seeds[p]).uniform();
        const probs = cdf(x);
        let i = 0;
        while (i < probs.length - 1 && probs[i] < u) i++;
        out[r * seq + p] = c.tokens[i];
      }
    }
    return out;
  };
}
