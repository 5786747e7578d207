/**
 * Token sanitisation before the prefix: each token x is replaced by a token drawn from the mechanism's output
 * distribution for x, so that what any attack on the hidden states recovers is the sanitised text. The draws are
 * derived like the noise (stream.ts), so a re-upload sanitises alike. Two mechanisms share this sampler:
 * - SanText (Yue et al. 2021, here): y with probability proportional to exp(-epsilon * dist(x, y) / 2) over a
 *   candidate vocabulary, dist the Euclidean distance between input embeddings over their mean pairwise distance:
 *   epsilon-metric-LDP per token;
 * - randomised response within public groups of similar tokens (groups.ts).
 */
import { positionSeeds, SeededStream } from './stream.ts';
import { rowLength } from './attacks/activations.ts';

/** A token's output distribution: its possible replacements and their cumulative probabilities (last one 1). */
export interface Outputs {
  tokens: Int32Array;
  cdf: Float64Array;
}

/** A sanitisation mechanism: each token's output distribution, or undefined for tokens left as they are. */
export interface TokenMechanism {
  outputs(token: number): Outputs | undefined;
  /**
   * What a token's draw hangs on, with the replaced tokens before it: the token itself unless the mechanism says
   * otherwise (groups: the group). A draw hung on the token gives it a fixed replacement of its own after a given
   * beginning, so equal outputs across rows mark equal tokens, which counting decodes.
   */
  seedOf?(token: number): number;
}

/** What the mechanism turns x into: each output token with its probability. */
export function distribution(m: TokenMechanism, x: number): Map<number, number> {
  const o = m.outputs(x);
  const out = new Map<number, number>();
  if (!o) return out.set(x, 1);
  o.tokens.forEach((y, i) => out.set(y, (out.get(y) ?? 0) + o.cdf[i] - (i ? o.cdf[i - 1] : 0)));
  return out;
}

/** Cumulative probabilities from unnormalised weights. */
export function cumulative(weights: ArrayLike<number>): Float64Array {
  const out = new Float64Array(weights.length);
  let total = 0;
  for (let i = 0; i < weights.length; i++) out[i] = total += weights[i];
  for (let i = 0; i < out.length; i++) out[i] /= total;
  out[out.length - 1] = 1;
  return out;
}

export interface Candidates {
  tokens: Int32Array;
  /** A token's input embedding (the model's token table row). */
  embedding: (token: number) => Float32Array;
  /** Tokens never replaced (start and end tokens: public, the same in every row). */
  keep: ReadonlySet<number>;
}

function distance(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let k = 0; k < a.length; k++) s += (a[k] - b[k]) ** 2;
  return Math.sqrt(s);
}

/** SanText's mechanism over a candidate vocabulary at epsilon. */
export function santext(c: Candidates, epsilon: number): TokenMechanism {
  const table = Array.from(c.tokens, (t) => c.embedding(t));
  // The candidates' mean pairwise distance: the unit epsilon's distances are measured in.
  let [sum, pairs] = [0, 0];
  for (let i = 0; i < table.length; i++) for (let j = i + 1; j < table.length; j++, pairs++) sum += distance(table[i], table[j]);
  const unit = pairs ? sum / pairs : 1;
  const cache = new Map<number, Outputs>();
  return {
    outputs(x) {
      if (c.keep.has(x)) return undefined;
      let out = cache.get(x);
      if (!out) {
        const e = c.embedding(x);
        const logits = table.map((row) => (-epsilon * distance(e, row)) / unit / 2);
        const top = Math.max(...logits);
        cache.set(x, (out = { tokens: c.tokens, cdf: cumulative(logits.map((l) => Math.exp(l - top))) }));
      }
      return out;
    },
  };
}

/** The sanitiser of a mechanism under a device key; its result maps a batch's ids [rows, seq] (with mask) to sanitised ids. */
export function sanitiser(
  mechanism: TokenMechanism,
  key: Uint8Array,
  context: Uint8Array,
): (ids: Int32Array, mask: ArrayLike<number>, rows: number, seq: number) => Int32Array {
  const stream = new SeededStream(key, 1);
  return (ids, mask, rows, seq) => {
    const out = Int32Array.from(ids);
    for (let r = 0; r < rows; r++) {
      const length = rowLength(mask, r, seq);
      // The seeds chain over the replaced tokens only: a start token the round adds (or not) changes no draw.
      const replaced = Array.from({ length }, (_, p) => ({ i: r * seq + p, o: mechanism.outputs(ids[r * seq + p]) })).filter(
        (x): x is { i: number; o: Outputs } => x.o !== undefined,
      );
      const seeds = positionSeeds(
        key,
        context,
        replaced.map(({ i }) => mechanism.seedOf?.(ids[i]) ?? ids[i]),
        replaced.length,
      );
      for (const [k, { i, o }] of replaced.entries()) {
        const u = stream.reset(seeds[k]).uniform();
        let j = 0;
        while (j < o.cdf.length - 1 && o.cdf[j] < u) j++;
        out[i] = o.tokens[j];
      }
    }
    return out;
  };
}
