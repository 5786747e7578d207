import { describe, expect, it } from 'vitest';
import { holm, pairedTTest } from './stats.ts';

// python3 experiments/golden_stats.py (scipy.stats.ttest_rel; Holm written out plainly).
const GOLDEN = {
  ttest_rel: [
    { a: [0.71, 0.65, 0.8, 0.62, 0.74], b: [0.6, 0.61, 0.66, 0.58, 0.7], t: 3.46536750285227, df: 4, p: 0.025691771817504195 },
    { a: [0.5, 0.52, 0.49, 0.55, 0.47, 0.51, 0.53], b: [0.51, 0.5, 0.52, 0.5, 0.49, 0.52, 0.5], t: 0.3862269678805871, df: 6, p: 0.7126531243750601 },
    { a: [0.3, 0.9, 0.4], b: [0.2, 0.1, 0.5], t: 0.9773555548504416, df: 2, p: 0.431464756385039 },
  ],
  holm: { p: [0.01, 0.04, 0.03, 0.005, 0.2], adjusted: [0.04, 0.09, 0.09, 0.025, 0.2] },
};

describe('the tests behind the verdicts', () => {
  it("pairs seeds as SciPy's ttest_rel does", () => {
    for (const g of GOLDEN.ttest_rel) {
      const r = pairedTTest(g.a, g.b);
      expect(r.t).toBeCloseTo(g.t, 10);
      expect(r.df).toBe(g.df);
      expect(r.p).toBeCloseTo(g.p, 10);
      // Swapping the methods swaps the sign, not the p-value.
      expect(pairedTTest(g.b, g.a).p).toBeCloseTo(g.p, 10);
    }
  });

  it('decides nothing from one seed, and everything from pairs that all differ alike', () => {
    expect(pairedTTest([0.9], [0.1]).p).toBeNaN();
    expect(pairedTTest([3, 4, 5], [1, 2, 3])).toMatchObject({ p: 0, t: Infinity });
    expect(pairedTTest([0.5, 0.6], [0.5, 0.6])).toMatchObject({ p: 1, t: 0 });
    expect(() => pairedTTest([1, 2], [1])).toThrow('a paired test needs pairs: 2 values against 1');
  });

  it("corrects for several claims by Holm's step-down", () => {
    const adjusted = holm(GOLDEN.holm.p);
    GOLDEN.holm.adjusted.forEach((x, i) => expect(adjusted[i]).toBeCloseTo(x, 12));
    // A claim that could not be tested takes no share of the correction.
    expect(holm([0.01, NaN, 0.02])).toEqual([0.02, NaN, 0.02]);
  });
});
