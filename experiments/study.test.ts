import { describe, expect, it } from 'vitest';
import { decideClaims, spread } from './study.ts';
import { pairedTTest } from './stats.ts';

describe('seeds and their spread', () => {
  it('gives the mean and the sample standard deviation', () => {
    expect(spread([1, 2, 3])).toEqual({ mean: 2, std: 1, values: [1, 2, 3] });
    expect(spread([0.5])).toEqual({ mean: 0.5, std: 0, values: [0.5] });
  });

  it('decides claims by paired tests across seeds, corrected for the number of claims', () => {
    const high = spread([0.9, 0.86, 0.93, 0.88, 0.91]);
    const low = spread([0.5, 0.52, 0.48, 0.55, 0.49]);
    const [up, down] = decideClaims([
      { a: high, b: low },
      { a: low, b: high },
    ]);
    expect(up).toMatchObject({ verdict: 'supports', n: 5 });
    expect(down!.verdict).toBe('contradicts');
    expect(up!.adjusted).toBeCloseTo(2 * pairedTTest(high.values, low.values).p, 12);
    // The pairing matters: each seed's partition lifts or sinks both methods alike, which a comparison of the means
    // against their spreads cannot see. Here the spreads overlap, yet every seed favours a by 0.02.
    const a = spread([0.6, 0.72, 0.81, 0.66, 0.9]);
    const b = spread(a.values.map((x) => x - 0.02 + (x > 0.7 ? 0.001 : -0.001)));
    expect(Math.abs(a.mean - b.mean)).toBeLessThan(Math.hypot(a.std, b.std));
    expect(decideClaims([{ a, b }])[0]!.verdict).toBe('supports');
    // A claim at p = 0.026 (golden_stats.py's first pair) stands alone; tested beside another, Holm doubles it past 0.05.
    const golden = { a: spread([0.71, 0.65, 0.8, 0.62, 0.74]), b: spread([0.6, 0.61, 0.66, 0.58, 0.7]) };
    const noise = { a: spread([0.5, 0.52, 0.49, 0.55, 0.47]), b: spread([0.51, 0.5, 0.52, 0.5, 0.49]) };
    expect(decideClaims([golden])[0]!.verdict).toBe('supports');
    const [corrected] = decideClaims([golden, noise]);
    expect(corrected!.adjusted).toBeCloseTo(2 * 0.025691771817504195, 10);
    expect(corrected!.verdict).toBe('cannot decide');
  });

  it('tests nothing from one seed, nor where neither method rises above the majority class', () => {
    expect(decideClaims([{ a: spread([0.9]), b: spread([0.1]) }])[0]).toMatchObject({ verdict: 'cannot decide' });
    const floor = decideClaims([{ a: spread([0.25, 0.251, 0.249, 0.25, 0.252]), b: spread([0.23, 0.229, 0.231, 0.23, 0.228]), floor: 0.267 }])[0]!;
    expect(floor.verdict).toBe('cannot decide');
    expect(floor.adjusted).toBeNaN();
  });
});
