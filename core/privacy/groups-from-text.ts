/**
 * Groups of similar tokens from public text, for randomised response within groups (groups.ts): tokens are similar
 * when they keep the same company. Each token's pointwise mutual information with every other over the rows where
 * both occur (add-one smoothed, not clipped at 0: that a positive word avoids negative ones is most of what it
 * says), a rank-`dims` spectral embedding of that symmetric matrix (the construction behind GloVe-like vectors),
 * cosine similarity, then average-linkage clustering that merges the most similar pair of clusters while one of them
 * holds fewer than `minSize` tokens. Cubic in the public vocabulary: meant for a few thousand tokens at most.
 * Deterministic for its input.
 */
import { EVD, Matrix } from 'ml-matrix';
import type { TokenGroups } from './groups.ts';

/** The public vocabulary this builder accepts: above it, bring groups made from a real embedding. */
export const MAX_GROUP_VOCABULARY = 3000;

export function groupsFromText(
  rows: readonly ArrayLike<number>[],
  { minSize, skip, placeholder, dims = 8 }: { minSize: number; skip: ReadonlySet<number>; placeholder: number; dims?: number },
): TokenGroups {
  const vocab = [...new Set(rows.flatMap((r) => Array.from(r)).filter((t) => !skip.has(t) && t !== placeholder))].sort((a, b) => a - b);
  const n = vocab.length;
  if (n < minSize) throw new Error(`groups: the public text holds ${n} tokens, fewer than one group of ${minSize}`);
  if (n > MAX_GROUP_VOCABULARY) throw new Error(`groups: the public text holds ${n} tokens, more than the ${MAX_GROUP_VOCABULARY} this builder handles`);
  const similarity = cosines(embedding(pmi(rows, vocab), Math.min(dims, n)));
  return { groups: clusters(similarity, minSize).map((c) => c.map((i) => vocab[i]).sort((x, y) => x - y)), placeholder };
}

/** Add-one smoothed PMI between tokens over the rows they share: log((c + 1) N / ((m_a + n)(m_b + n))). */
function pmi(rows: readonly ArrayLike<number>[], vocab: number[]): Matrix {
  const n = vocab.length;
  const index = new Map(vocab.map((t, i) => [t, i]));
  const counts = Matrix.zeros(n, n);
  for (const row of rows) {
    const present = [...new Set(Array.from(row).filter((t) => index.has(t)))].map((t) => index.get(t)!);
    for (const a of present) for (const b of present) if (a !== b) counts.set(a, b, counts.get(a, b) + 1);
  }
  const marginal = counts.sum('row');
  const total = marginal.reduce((s, c) => s + c, 0);
  return Matrix.from1DArray(
    n,
    n,
    Array.from({ length: n * n }, (_, i) => {
      const [a, b] = [Math.floor(i / n), i % n];
      return Math.log(((counts.get(a, b) + 1) * total) / ((marginal[a] + n) * (marginal[b] + n)));
    }),
  );
}

/** Rows of eigenvectors times |eigenvalue| for the `dims` eigenvalues largest in magnitude: the truncated SVD of a symmetric matrix. */
function embedding(m: Matrix, dims: number): number[][] {
  const evd = new EVD(m, { assumeSymmetric: true });
  const order = evd.realEigenvalues
    .map((v, i) => [Math.abs(v), i])
    .sort((x, y) => y[0] - x[0])
    .slice(0, dims);
  const vectors = evd.eigenvectorMatrix;
  return Array.from({ length: m.rows }, (_, r) => order.map(([s, i]) => vectors.get(r, i) * s));
}

function cosines(rows: number[][]): Float64Array {
  const n = rows.length;
  const unit = rows.map((v) => {
    const norm = Math.hypot(...v) || 1;
    return v.map((x) => x / norm);
  });
  const out = new Float64Array(n * n);
  for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) out[a * n + b] = unit[a].reduce((s, x, k) => s + x * unit[b][k], 0);
  return out;
}

/** Average-linkage merges of the most similar pair of clusters of which one is still under minSize. */
function clusters(similarity: Float64Array, minSize: number): number[][] {
  const n = Math.round(Math.sqrt(similarity.length));
  const sums = Float64Array.from(similarity);
  const members: (number[] | undefined)[] = Array.from({ length: n }, (_, i) => [i]);
  for (;;) {
    const live = members.flatMap((m, i) => (m ? [i] : []));
    if (live.length === 1 || live.every((i) => members[i]!.length >= minSize)) break;
    let [x, y, best] = [-1, -1, -Infinity];
    for (const a of live)
      for (const b of live) {
        if (b <= a || (members[a]!.length >= minSize && members[b]!.length >= minSize)) continue;
        const score = sums[a * n + b] / (members[a]!.length * members[b]!.length);
        if (score > best) [x, y, best] = [a, b, score];
      }
    members[x]!.push(...members[y]!);
    members[y] = undefined;
    for (const c of live) sums[x * n + c] = sums[c * n + x] = sums[x * n + c] + sums[y * n + c];
  }
  return members.filter((m): m is number[] => !!m);
}
