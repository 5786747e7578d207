/**
 * One experiment over several seeds (each seed: its own partition draw, initialisation and batch order), kept or run
 * again by its provenance like every experiment, and what the seeds agree on: each method's final accuracy as mean
 * and spread, and whether claimed differences between methods stand, by paired tests across the seeds corrected for
 * the number of claims.
 */
import { join } from 'node:path';
import { runExperiment, type ExperimentOptions } from './experiment.ts';
import { keptResults, provenance } from './provenance.ts';
import type { MethodResult } from './sim/methods.ts';
import { holm, pairedTTest, type PairedTest } from './stats.ts';

export type StoredResult = Omit<MethodResult, 'final'>;

export interface Spread {
  mean: number;
  std: number;
  values: number[];
}

/** Final-round accuracy (and train loss) per method, over the seeds. */
export interface SeedStudy {
  seeds: number[];
  majorityClass?: number;
  accuracy: Record<string, Spread>;
  trainLoss: Record<string, Spread>;
  /** Each seed's results by method: for plots and modelled time. */
  runs: Array<Record<string, StoredResult>>;
  minutes: number;
}

export function spread(values: number[]): Spread {
  const mean = values.reduce((a, x) => a + x, 0) / values.length;
  const std = values.length > 1 ? Math.sqrt(values.reduce((a, x) => a + (x - mean) ** 2, 0) / (values.length - 1)) : 0;
  return { mean, std, values };
}

/** Runs (or keeps) `base` under each seed, in `base.out`/seed-N, and summarises. */
export async function runSeeds(
  base: ExperimentOptions,
  seeds: number[],
  { fresh = false, log = (m: string) => process.stderr.write(`${m}\n`) } = {},
): Promise<SeedStudy> {
  const runs: Array<Record<string, StoredResult>> = [];
  let majorityClass: number | undefined;
  let minutes = 0;
  for (const seed of seeds) {
    const options = { ...base, seed, out: join(base.out, `seed-${seed}`) };
    const { key, provenance: now } = await provenance(options);
    const kept = fresh ? { rerun: '--fresh' } : await keptResults<{ methods: StoredResult[]; majorityClass?: number }>(options.out, key, now);
    let methods: StoredResult[];
    if ('kept' in kept) {
      log(`[study] ${options.out}: kept (made from the same model, data and settings)`);
      ({ methods, majorityClass } = kept.kept);
    } else {
      log(`[study] ${options.out}: running (${kept.rerun})`);
      const { results, summary } = await runExperiment(options);
      methods = results.map(({ final: _final, ...r }) => r);
      majorityClass = summary.majorityClass as number | undefined;
    }
    runs.push(Object.fromEntries(methods.map((m) => [m.method, m])));
    minutes += methods.reduce((a, m) => a + m.wallMs, 0) / 60000;
  }
  const names = Object.keys(runs[0] ?? {});
  const over = (f: (r: StoredResult) => number) => Object.fromEntries(names.map((n) => [n, spread(runs.map((r) => f(r[n]!)))]));
  return { seeds, majorityClass, accuracy: over((r) => r.rounds.at(-1)!.accuracy), trainLoss: over((r) => r.rounds.at(-1)!.trainLoss), runs, minutes };
}

export type Verdict = 'supports' | 'contradicts' | 'cannot decide';

export interface Claim {
  /** The method claimed better, and the other: final accuracy per seed, in the same seed order. */
  a: Spread;
  b: Spread;
  /** The majority class: methods that do not rise above it differ by noise, and are not tested. */
  floor?: number;
}

export interface Decision extends PairedTest {
  /** Holm-adjusted over every claim tested together; NaN where the claim was not tested. */
  adjusted: number;
  verdict: Verdict;
}

/**
 * Each claim tested by a paired t-test across seeds (two-sided), the p-values corrected by Holm's step-down over all
 * the claims at once; a claim stands (or falls) where its adjusted p is below `alpha`. Untested: fewer than 2
 * seeds, or neither method's mean above the floor.
 */
export function decideClaims(claims: readonly Claim[], alpha = 0.05): Decision[] {
  const tests = claims.map(({ a, b, floor = -Infinity }) => {
    const test = pairedTTest(a.values, b.values);
    return Math.max(a.mean, b.mean) > floor ? test : { ...test, p: NaN };
  });
  const adjusted = holm(tests.map((t) => t.p));
  return tests.map((t, i) => {
    const q = adjusted[i]!;
    const verdict: Verdict = !(q < alpha) ? 'cannot decide' : t.difference > 0 ? 'supports' : 'contradicts';
    return { ...t, adjusted: q, verdict };
  });
}

export const pm = (s: Spread) => `${(100 * s.mean).toFixed(1)} ± ${(100 * s.std).toFixed(1)}%`;
