import { describe, expect, it } from 'vitest';
import { Random } from '../../core/random.ts';
import { largestPrefixSum, orderFor, pairBalance, type OrderingSpec } from './ordering.ts';

const devices = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
const isPermutation = (order: string[]) => order.length === devices.length && new Set(order).size === devices.length && order.every((d) => devices.includes(d));

function updates(n: number, dim: number, seed: number): Float32Array[] {
  const rng = new Random(seed);
  return Array.from({ length: n }, () => Float32Array.from({ length: dim }, () => rng.normal()));
}

describe('client orderings', () => {
  it('every ordering yields a valid permutation, every round', () => {
    const specs: OrderingSpec[] = [{ kind: 'random-reshuffle' }, { kind: 'shuffle-once' }, { kind: 'fixed', order: [...devices].reverse() }, { kind: 'grab' }];
    for (const spec of specs) {
      let previous: { order: string[]; updates: Map<string, Float32Array> } | undefined;
      for (let round = 0; round < 4; round++) {
        const order = orderFor(spec, { round, devices, seed: 5, previous });
        expect(isPermutation(order), `${spec.kind} round ${round}`).toBe(true);
        const vs = updates(devices.length, 16, round);
        previous = { order, updates: new Map(order.map((d, i) => [d, vs[i]])) };
      }
    }
  });

  it('random reshuffling draws a new permutation each round; shuffle-once keeps one; both follow the seed', () => {
    const rr = [0, 1, 2].map((round) => orderFor({ kind: 'random-reshuffle' }, { round, devices, seed: 1 }).join());
    expect(new Set(rr).size).toBe(3);
    expect(orderFor({ kind: 'random-reshuffle' }, { round: 1, devices, seed: 1 }).join()).toBe(rr[1]);
    const once = [0, 1, 2].map((round) => orderFor({ kind: 'shuffle-once' }, { round, devices, seed: 1 }).join());
    expect(new Set(once).size).toBe(1);
    expect(orderFor({ kind: 'shuffle-once' }, { round: 0, devices, seed: 2 }).join()).not.toBe(once[0]);
  });

  it('a fixed order must list each device once', () => {
    expect(() => orderFor({ kind: 'fixed', order: ['a', 'b'] }, { round: 0, devices, seed: 0 })).toThrow(
      /the fixed order must list every device once: missing c, d, e, f, g/,
    );
    expect(() => orderFor({ kind: 'fixed', order: [...devices, 'zz'] }, { round: 0, devices, seed: 0 })).toThrow(/unknown zz/);
  });

  it("GraB's pair balance lowers the largest prefix sum of the centred updates below the order it started from", () => {
    // Starting orders that herd badly: similar updates next to each other.
    for (let seed = 0; seed < 5; seed++) {
      const base = updates(2, 32, seed);
      const clustered = Array.from({ length: 12 }, (_, i) => base[i < 6 ? 0 : 1].map((x) => x + 0.1 * Math.sin(i + x)));
      const start = clustered.map((_, i) => i);
      const next = pairBalance(clustered);
      expect([...next].sort((x, y) => x - y)).toEqual(start);
      const worst = largestPrefixSum(clustered, start);
      expect(largestPrefixSum(clustered, next)).toBeLessThan(worst * 0.6);
      // Round after round (each in the order the last one chose), the herding keeps improving.
      let order = next;
      for (let round = 0; round < 3; round++) order = pairBalance(order.map((i) => clustered[i])).map((j) => order[j]);
      expect(largestPrefixSum(clustered, order)).toBeLessThan(worst * 0.35);
    }
    // Random updates, in their given order: still lower on average.
    let before = 0;
    let after = 0;
    for (let seed = 0; seed < 20; seed++) {
      const vs = updates(9, 64, 100 + seed);
      before += largestPrefixSum(
        vs,
        vs.map((_, i) => i),
      );
      after += largestPrefixSum(vs, pairBalance(vs));
    }
    expect(after).toBeLessThan(before);
  });
});
