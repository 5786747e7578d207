import { describe, expect, it } from 'vitest';
import { majorityRate, nearestTokens, recoveryRate } from './inversion.ts';

describe('nearest-neighbour inversion', () => {
  const reference = { vectors: Float32Array.from([1, 0, 0, 1, -1, 0]), tokens: Int32Array.from([7, 9, 7]), d: 2 };

  it('gives each hidden state the token of its most similar reference (cosine: the length does not count)', () => {
    expect(Array.from(nearestTokens(reference, Float32Array.from([0.9, 0.1, 0.2, 0.8, 30, 2, -5, -0.1])))).toEqual([7, 9, 7, 7]);
  });

  it('scores the guesses, and the baseline of always guessing the most frequent token', () => {
    expect(recoveryRate([7, 9, 7, 1], [7, 9, 9, 1])).toBe(0.75);
    expect(majorityRate(reference, [7, 9, 9, 1])).toBe(0.25);
    expect(() => recoveryRate([1], [1, 2])).toThrow('1 guesses for 2 tokens');
  });
});
