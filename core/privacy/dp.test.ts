import { describe, expect, it } from 'vitest';
import { erfc, gaussianDelta, gaussianEpsilon, gaussianSigma } from './dp.ts';

// Golden values from a plain scipy implementation of the analytic Gaussian mechanism (Balle and Wang 2018):
// delta(eps, sigma) = norm.cdf(s/2sigma - eps sigma/s) - exp(eps) norm.cdf(-s/2sigma - eps sigma/s), solved for sigma
// with brentq (xtol 1e-14).
const GOLDEN: Array<[epsilon: number, delta: number, sensitivity: number, sigma: number]> = [
  [1, 1e-5, 1, 3.730631634815946],
  [0.5, 1e-5, 2, 14.063653351164996],
  [4, 1e-5, 2, 2.1623236990404773],
  [8, 1e-6, 2, 1.3058707687164313],
  [16, 1e-5, 2, 0.688354856992787],
];

describe('analytic Gaussian mechanism', () => {
  it('calibrates sigma as the reference does', () => {
    for (const [epsilon, delta, sensitivity, sigma] of GOLDEN) expect(gaussianSigma(epsilon, delta, sensitivity)).toBeCloseTo(sigma, 9);
  });

  it('is tight: at that sigma delta is met, and 1% less noise breaks it', () => {
    for (const [epsilon, delta, sensitivity, sigma] of GOLDEN) {
      expect(gaussianDelta(epsilon, sigma, sensitivity)).toBeLessThanOrEqual(delta * (1 + 1e-6));
      expect(gaussianDelta(epsilon, sigma * 0.99, sensitivity)).toBeGreaterThan(delta);
      expect(gaussianEpsilon(sigma, delta, sensitivity)).toBeCloseTo(epsilon, 6);
    }
  });

  it('needs less noise than the classic bound where that bound holds (epsilon < 1)', () => {
    const classic = Math.sqrt(2 * Math.log(1.25 / 1e-5)) / 0.5;
    expect(gaussianSigma(0.5, 1e-5, 1)).toBeLessThan(classic);
  });

  it('computes erfc to double precision in the centre and the tail (scipy.special.erfc)', () => {
    expect(erfc(0.5)).toBeCloseTo(0.4795001221869535, 15);
    expect(erfc(2.6) / 0.000236034416529349).toBeCloseTo(1, 12);
    expect(erfc(5) / 1.5374597944280347e-12).toBeCloseTo(1, 12);
    expect(erfc(-1)).toBeCloseTo(1.8427007929497148, 15);
  });

  it('refuses settings that promise nothing', () => {
    expect(() => gaussianSigma(0, 1e-5, 1)).toThrow('epsilon 0');
    expect(() => gaussianSigma(1, 1, 1)).toThrow('delta 1');
  });
});
