import { describe, expect, it } from 'vitest';
import { Random } from '../../core/random.ts';
import { scoreLogits } from './score.ts';

describe('scoreLogits', () => {
  it("gives the float64 cross-entropy and argmax of rows as wide as Llama 3's vocabulary", () => {
    const [rows, V] = [3, 128256];
    const rng = new Random(1);
    const logits = Float32Array.from({ length: rows * V }, () => rng.normal() * 4);
    const labels = [5, 128255, 70000];
    let want = 0;
    const argmax: number[] = [];
    for (let r = 0; r < rows; r++) {
      const row = Array.from(logits.subarray(r * V, (r + 1) * V));
      const max = row.reduce((a, x) => Math.max(a, x), -Infinity);
      want += Math.log(row.reduce((a, x) => a + Math.exp(x - max), 0)) + max - row[labels[r]!]!;
      argmax.push(row.indexOf(max));
    }
    const got = scoreLogits(logits, labels, V);
    expect(Math.abs(got.loss - want / rows)).toBeLessThan(1e-9 * want);
    expect([...got.predictions]).toEqual(argmax);
    expect(got.accuracy).toBe(0);
    expect(scoreLogits(Float32Array.from([0, 2, 1, 0]), [1, 0], 2).accuracy).toBe(1);
  });
});
