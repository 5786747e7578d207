import { describe, expect, it } from 'vitest';
import { nearestAttack, nearestTokens } from './nearest.ts';
import { mostFrequent, scoreGuesses } from './score.ts';

describe('nearest-neighbour inversion', () => {
  const reference = { vectors: Float32Array.from([1, 0, 0, 1, -1, 0]), tokens: Int32Array.from([7, 9, 7]), d: 2 };

  it('gives each hidden state the token of its most similar reference (cosine: the length does not count)', () => {
    expect(Array.from(nearestTokens(reference, Float32Array.from([0.9, 0.1, 0.2, 0.8, 30, 2, -5, -0.1])))).toEqual([7, 9, 7, 7]);
    const received = { hidden: Float32Array.from([0.9, 0.1, 0.2, 0.8, 30, 2, -5, -0.1]), mask: [1, 1, 1, 0], rows: 2, seq: 2, d: 2 };
    expect(Array.from(nearestAttack(received, reference))).toEqual([7, 9, 7, -1]);
  });
});

describe('scoring an attack', () => {
  it('counts real tokens only, leaves out start tokens, and scores rows recovered at least half', () => {
    // Two rows of 4: row 0 = [start 50, 7, 9, 9], row 1 = [start 50, 1, 2, pad].
    const actual = [50, 7, 9, 9, 50, 1, 2, 0];
    const mask = [1, 1, 1, 1, 1, 1, 1, 0];
    const guesses = [50, 7, 9, 1, 50, 3, 3, -1];
    const s = scoreGuesses(guesses, actual, mask, 2, 4, 9, new Set([50]));
    expect(s).toEqual({ recovery: 2 / 5, majority: 2 / 5, rowsHalf: 0.5, tokens: 5 });
    expect(mostFrequent([50, 50, 50, 7, 9, 9], new Set([50]))).toBe(9);
    expect(() => scoreGuesses([1], actual, mask, 2, 4, 9)).toThrow('1 guesses');
  });
});
