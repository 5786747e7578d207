import { describe, expect, it } from 'vitest';
import { syntheticSentiment } from '../data/synthetic.ts';
import { posteriorDecoder } from './attacks/posterior.ts';
import { checkGroups, groupMechanism, type TokenGroups } from './groups.ts';
import { groupsFromText } from './groups-from-text.ts';
import { distribution, sanitiser } from './sanitise.ts';
import { defenceKey } from './stream.ts';

const key = defenceKey('a device secret of thirty-two chars!');
const context = new TextEncoder().encode('segment\ngroups');
const eight = (from: number) => Array.from({ length: 8 }, (_, i) => from + i);
const START = 1;
const table: TokenGroups = { groups: [eight(10), eight(20)], placeholder: 0, keep: [START] };

describe('groups a device is handed', () => {
  it('are refused by name when they could give a token away', () => {
    const check = (g: unknown, minSize?: number) => () => checkGroups(g as TokenGroups, { vocabSize: 100, minSize });
    expect(check(table)).not.toThrow();
    expect(check({ groups: [eight(10), [...eight(20), 17]], placeholder: 0 })).toThrow(/groups\[1\]: token 17 is also in groups\[0\]/);
    expect(check({ groups: [eight(10).slice(1)], placeholder: 0 })).toThrow(/groups\[0\]: 7 tokens, fewer than the owner's minimum of 8/);
    expect(check(table, 9)).toThrow(/minimum of 9/);
    expect(check({ groups: [eight(95)], placeholder: 0 })).toThrow(/groups\[0\]: 100 is not a token id below 100/);
    expect(check({ groups: [[...eight(10), 0]], placeholder: 0 })).toThrow(/holds the placeholder 0/);
    expect(check({ groups: [eight(10)], placeholder: -1 })).toThrow(/groups.placeholder/);
    expect(check({ groups: 'all' })).toThrow(/must be \{"groups"/);
    expect(check({ ...table, keep: [10] })).toThrow(/groups\[0\]: holds 10, which groups.keep lets through unchanged/);
    expect(check({ ...table, keep: Array.from({ length: 17 }, (_, i) => 80 + i) })).toThrow(/groups.keep: must be an array of at most 16/);
    expect(() => checkGroups({ groups: [Array.from({ length: 5000 }, (_, i) => i + 1)], placeholder: 0 }, { vocabSize: 10_000 })).toThrow(
      /5000 tokens, more than 4096/,
    );
  });
});

describe('randomised response within groups', () => {
  it('keeps a token with probability e^eps / (e^eps + K - 1): what epsilon states, measured over 4000 draws', () => {
    const epsilon = 1;
    const m = groupMechanism(table, epsilon);
    const stated = Math.exp(epsilon) / (Math.exp(epsilon) + 7);
    expect(distribution(m, 12).get(12)).toBeCloseTo(stated, 12);
    expect(distribution(m, 12).get(13)).toBeCloseTo(1 / (Math.exp(epsilon) + 7), 12);
    // Every pair of a group is epsilon-indistinguishable: the largest ratio over outputs is e^epsilon exactly.
    const ratios = [...distribution(m, 12)].map(([y, p]) => p / distribution(m, 15).get(y)!);
    expect(Math.max(...ratios)).toBeCloseTo(Math.exp(epsilon), 12);
    // Draws over distinct rows: draws hang on the groups, so each row's beginning spells its number in groups.
    const rows = 4000;
    const seq = 14;
    const ids = new Int32Array(rows * seq);
    for (let r = 0; r < rows; r++) ids.set([1000 + r, ...Array.from({ length: 12 }, (_, b) => ((r >> b) & 1 ? 20 : 10)), 12], seq * r);
    const out = sanitiser(m, key, context)(ids, new Int32Array(rows * seq).fill(1), rows, seq);
    let kept = 0;
    for (let r = 0; r < rows; r++) {
      expect(table.groups[0]).toContain(out[seq * r + seq - 1]);
      kept += out[seq * r + seq - 1] === 12 ? 1 : 0;
    }
    // Binomial(4000, 0.28): a standard deviation is 0.0071.
    expect(Math.abs(kept / rows - stated)).toBeLessThan(0.03);
    // Tokens of no group leave as the placeholder.
    expect([0, 1, 2].map((r) => out[seq * r])).toEqual([0, 0, 0]);
  });

  it('sanitises a row alike in any batch layout, and keeps start tokens', () => {
    const m = groupMechanism(table, 0);
    const s = sanitiser(m, key, context);
    const row = [START, 10, 11, 12, 20, 21, 22];
    const alone = s(Int32Array.from(row), new Int32Array(7).fill(1), 1, 7);
    const padded = new Int32Array(2 * 10);
    padded.set([START, 13, 14], 0);
    padded.set(row, 10);
    const mask = Int32Array.from(padded, (_, i) => (i < 3 || (i >= 10 && i < 17) ? 1 : 0));
    expect(Array.from(s(padded, mask, 2, 10).subarray(10, 17))).toEqual(Array.from(alone));
    expect(alone[0]).toBe(START);
    // The start token is the table's to keep, and no draw hangs on it: a round that adds none replaces alike.
    expect(Array.from(s(Int32Array.from(row.slice(1)), new Int32Array(6).fill(1), 1, 6))).toEqual(Array.from(alone.subarray(1)));
    // Only the owner's table keeps a token: without it in keep, the start token is of no group and leaves as the placeholder.
    expect(groupMechanism({ ...table, keep: [] }, 0).outputs(START)!.tokens).toEqual(Int32Array.of(0));
    // Another key sanitises otherwise (the draws are the device's own).
    const other = sanitiser(m, defenceKey('another device secret, 32 chars!!'), context);
    const many = Int32Array.from({ length: 64 }, (_, i) => (i === 0 ? START : 10 + (i % 8)));
    expect(Array.from(other(many, new Int32Array(64).fill(1), 1, 64))).not.toEqual(Array.from(s(many, new Int32Array(64).fill(1), 1, 64)));
  });

  it('at epsilon 0 sanitises rows alike whose tokens differ only within their groups: an output says nothing of which member', () => {
    const s = sanitiser(groupMechanism(table, 0), key, context);
    // Each member of group 20 after a beginning that differs within group 10 and in a token of no group.
    const ids = Int32Array.from(eight(20).flatMap((x, r) => [START, 10 + r, 90 + r, x]));
    const out = s(ids, new Int32Array(ids.length).fill(1), 8, 4);
    const rows = Array.from({ length: 8 }, (_, r) => Array.from(out.subarray(4 * r, 4 * r + 4)));
    // Drawn per token, the eight would have differed: equal outputs after a shared beginning marked equal tokens.
    for (const row of rows) expect(row).toEqual(rows[0]);
    expect(table.groups[1]).toContain(rows[0][3]);
    expect(rows[0][2]).toBe(table.placeholder);
  });

  it.each([
    [1e-6, 0.99],
    [1, 0.4],
  ])('at epsilon %s hangs each draw on the groups: after one beginning, two members come out alike mostly (at least %s)', (epsilon, least) => {
    const s = sanitiser(groupMechanism(table, epsilon), key, context);
    const last = (row: number[]) => s(Int32Array.from(row), new Int32Array(row.length).fill(1), 1, row.length).at(-1);
    // 200 beginnings (each its own draws), each followed by token 20 and by token 21.
    let alike = 0;
    for (let k = 0; k < 200; k++) {
      const beginning = [START, ...Array<number>(k).fill(10)];
      alike += last([...beginning, 20]) === last([...beginning, 21]) ? 1 : 0;
    }
    // Drawn per token, about 1 in 8 came out alike (0.12 at epsilon 1): equal outputs then marked equal tokens.
    expect(alike / 200).toBeGreaterThanOrEqual(least);
  });
});

describe('the attacker who knows the groups', () => {
  it('guesses the likeliest original of each sanitised token: the prior times P(y | x)', () => {
    const m = groupMechanism(table, 1);
    // Public text: token 10 five times as frequent as the others of its group; 20..27 equally rare.
    const pub = [...Array(50).fill(10), ...eight(11).slice(0, 7), ...eight(20)];
    const decode = posteriorDecoder(m, pub, [...table.groups.flat()]);
    // y = 13: prior(10) = 50.5 * 1 beats prior(13) = 1.5 * e: the attacker answers 10.
    // y = 23: every prior 1.5, so x = y (e times likelier) wins. A start token decodes as itself.
    expect(Array.from(decode(Int32Array.of(13, 23, START, 10)))).toEqual([10, 23, START, 10]);
  });
});

describe('groups from public text', () => {
  it("put a positive word with positive words: the generated task's polarity survives sanitisation", () => {
    const words = new Map<string, number>();
    const id = (w: string) => words.get(w) ?? (words.set(w, words.size + 2), words.size + 1);
    const rows = syntheticSentiment(400, 3).map((r) => r.text.split(' ').map(id));
    const g = groupsFromText(rows, { minSize: 8, skip: new Set(), placeholder: 0 });
    expect(() => checkGroups(g, { vocabSize: words.size + 2 })).not.toThrow();
    const name = new Map([...words].map(([w, i]) => [i, w]));
    const positive = ['great', 'wonderful', 'superb', 'delightful', 'brilliant', 'moving', 'charming', 'excellent', 'joyful', 'clever'];
    const negative = ['awful', 'dull', 'boring', 'terrible', 'clumsy', 'tedious', 'bland', 'mediocre', 'painful', 'lazy'];
    const groupOf = (w: string) => g.groups.findIndex((x) => x.includes(words.get(w)!));
    expect(new Set(positive.map(groupOf)).size).toBe(1);
    expect(new Set(negative.map(groupOf)).size).toBe(1);
    expect(groupOf('great')).not.toBe(groupOf('awful'));
    // Whatever else a group holds (filler words), none holds words of both polarities.
    for (const group of g.groups) {
      const text = group.map((t) => name.get(t)!);
      expect(text.some((w) => positive.includes(w)) && text.some((w) => negative.includes(w))).toBe(false);
    }
  });
});
