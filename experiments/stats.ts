/**
 * The tests behind the experiments' verdicts: a paired t-test across seeds (each seed is one draw of partition,
 * initialisation and batch order, run by both methods: a pair), and Holm's step-down correction for testing several
 * claims at once. Student's t distribution comes from jstat; golden values from SciPy are in golden_stats.py.
 */
import jStat from 'jstat';

export interface PairedTest {
  /** Pairs (seeds). */
  n: number;
  /** Mean of a - b. */
  difference: number;
  t: number;
  df: number;
  /** Two-sided; NaN where there is nothing to test (fewer than 2 pairs). */
  p: number;
}

/** Student's paired t-test of a against b, two-sided (scipy.stats.ttest_rel). */
export function pairedTTest(a: readonly number[], b: readonly number[]): PairedTest {
  if (a.length !== b.length) throw new Error(`a paired test needs pairs: ${a.length} values against ${b.length}`);
  const d = a.map((x, i) => x - b[i]!);
  const n = d.length;
  const difference = d.reduce((s, x) => s + x, 0) / Math.max(1, n);
  if (n < 2) return { n, difference, t: NaN, df: 0, p: NaN };
  const sd = Math.sqrt(d.reduce((s, x) => s + (x - difference) ** 2, 0) / (n - 1));
  const df = n - 1;
  // Every pair differing by the same amount: certain, unless that amount is none.
  if (sd === 0) return { n, difference, t: difference === 0 ? 0 : Math.sign(difference) * Infinity, df, p: difference === 0 ? 1 : 0 };
  const t = difference / (sd / Math.sqrt(n));
  return { n, difference, t, df, p: 2 * (1 - jStat.studentt.cdf(Math.abs(t), df)) };
}

/** Holm's adjusted p-values (step-down, monotone, capped at 1), in the order given; NaN stays NaN and counts for none. */
export function holm(ps: readonly number[]): number[] {
  const tested = ps.map((p, i) => ({ p, i })).filter(({ p }) => !Number.isNaN(p));
  tested.sort((x, y) => x.p - y.p);
  const out = ps.map(() => NaN);
  let running = 0;
  for (const [rank, { p, i }] of tested.entries()) {
    running = Math.max(running, Math.min(1, (tested.length - rank) * p));
    out[i] = running;
  }
  return out;
}
