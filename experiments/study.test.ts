import { describe, expect, it } from 'vitest';
import { spread, verdict } from './study.ts';

describe('seeds and their spread', () => {
  it('gives the mean and the sample standard deviation', () => {
    expect(spread([1, 2, 3])).toEqual({ mean: 2, std: 1, values: [1, 2, 3] });
    expect(spread([0.5])).toEqual({ mean: 0.5, std: 0, values: [0.5] });
  });

  it('decides a claim only where the difference of the means exceeds the spread of the difference', () => {
    const high = spread([0.9, 0.91, 0.89]);
    const low = spread([0.5, 0.52, 0.48]);
    expect(verdict(high, low).verdict).toBe('supports');
    expect(verdict(low, high).verdict).toBe('contradicts');
    const noisy = spread([0.4, 0.9, 0.6]);
    expect(verdict(noisy, low)).toMatchObject({ verdict: 'cannot decide' });
    expect(verdict(noisy, low).spread).toBeCloseTo(Math.hypot(noisy.std, low.std), 12);
    // Two methods at the majority class differ by noise: nothing is decided, whatever the spread.
    expect(verdict(spread([0.25, 0.251, 0.249]), spread([0.23, 0.229, 0.231]), 0.267).verdict).toBe('cannot decide');
    expect(verdict(high, low, 0.267).verdict).toBe('supports');
    // One seed has no spread: nothing is decided, however large the difference.
    expect(verdict(spread([0.9]), spread([0.1])).verdict).toBe('cannot decide');
  });
});
