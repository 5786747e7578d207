/**
 * White-box search (the optimisation step of BiSR, CCS 2024; He et al. 2019; UnSplit): the server holds the frozen
 * prefix, so it decodes a row left to right, trying candidate tokens at each position after the ones it already
 * decoded and keeping the one whose hidden state, run through the real prefix (and the defence's deterministic part,
 * the clip), lies nearest the received one. Against a deterministic prefix it gives the text back exactly; against
 * noise it is the maximum-likelihood guess for each position given the decoded past.
 */
import { rowLength, type Activations, type PrefixRun } from './activations.ts';
import { normalized, type Reference } from './nearest.ts';

export interface WhiteBoxOptions {
  /** The tokens the attacker tries (its public text's vocabulary, or the whole vocabulary). */
  vocabulary: Int32Array;
  /** Where the vocabulary is larger than `shortlist`: the candidates at a position are the tokens whose public hidden states lie nearest (cosine) the received one. */
  reference?: Reference;
  shortlist?: number;
  /** The defence's clip norm, applied to each candidate's hidden state as the device applies it. */
  clip?: number;
  /** Candidate sequences per prefix run. */
  chunk?: number;
}

/** Guesses [rows, seq] (-1 on padding). */
export async function whiteBoxSearch(received: Activations, prefix: PrefixRun, o: WhiteBoxOptions): Promise<Int32Array> {
  const { hidden, mask, rows, seq, d } = received;
  const { shortlist = 64, chunk = 512 } = o;
  const guesses = new Int32Array(rows * seq).fill(-1);
  const lengths = Array.from({ length: rows }, (_, r) => rowLength(mask, r, seq));
  const rank = o.vocabulary.length > shortlist ? shortlister(o, shortlist) : () => o.vocabulary;
  for (let p = 0; p < Math.max(0, ...lengths); p++) {
    const jobs: Array<{ row: number; token: number }> = [];
    for (let r = 0; r < rows; r++)
      if (lengths[r] > p) for (const token of rank(hidden.subarray((r * seq + p) * d, (r * seq + p + 1) * d))) jobs.push({ row: r, token });
    const best = new Map<number, { token: number; distance: number }>();
    const len = p + 1;
    for (let start = 0; start < jobs.length; start += chunk) {
      const part = jobs.slice(start, start + chunk);
      const ids = new Int32Array(part.length * len);
      part.forEach(({ row, token }, i) => {
        ids.set(guesses.subarray(row * seq, row * seq + p), i * len);
        ids[i * len + p] = token;
      });
      const out = await prefix(ids, new Int32Array(ids.length).fill(1), part.length, len);
      part.forEach(({ row, token }, i) => {
        const v = out.subarray((i * len + p) * d, (i * len + p + 1) * d);
        const target = hidden.subarray((row * seq + p) * d, (row * seq + p + 1) * d);
        const distance = clippedDistance(v, target, o.clip);
        const current = best.get(row);
        if (!current || distance < current.distance) best.set(row, { token, distance });
      });
    }
    for (const [row, { token }] of best) guesses[row * seq + p] = token;
  }
  return guesses;
}

/** Squared distance from clip(v) to the target. */
function clippedDistance(v: Float32Array, target: Float32Array, clip: number | undefined): number {
  let norm = 0;
  for (let k = 0; k < v.length; k++) norm += v[k] * v[k];
  const scale = clip !== undefined && Math.sqrt(norm) > clip ? clip / Math.sqrt(norm) : 1;
  let distance = 0;
  for (let k = 0; k < v.length; k++) distance += (v[k] * scale - target[k]) ** 2;
  return distance;
}

/** The `size` vocabulary tokens whose public hidden states come nearest a received vector (best cosine per token). */
function shortlister(o: WhiteBoxOptions, size: number): (query: Float32Array) => Int32Array {
  const reference = o.reference;
  if (!reference) throw new Error('white-box search: a vocabulary larger than the shortlist needs the public reference to rank it');
  const { d } = reference;
  const refs = normalized(reference.vectors, d);
  const inVocabulary = new Set(o.vocabulary);
  return (query) => {
    const q = normalized(query, d);
    const score = new Map<number, number>();
    for (let r = 0; r < reference.tokens.length; r++) {
      const token = reference.tokens[r];
      if (!inVocabulary.has(token)) continue;
      let dot = 0;
      for (let k = 0; k < d; k++) dot += q[k] * refs[r * d + k];
      if (dot > (score.get(token) ?? -Infinity)) score.set(token, dot);
    }
    return Int32Array.from([...score].sort((a, b) => b[1] - a[1]).slice(0, size), ([t]) => t);
  };
}
