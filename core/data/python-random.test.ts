import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PythonRandom } from './python-random.ts';

// Written by harness_golden.py with CPython's own random module.
const golden = JSON.parse(readFileSync(new URL('harness-golden.json', import.meta.url), 'utf8')) as {
  sample: Array<{ seed: number; n: number; k: number; draws: number[][] }>;
  getrandbits1234: number[];
};

describe('PythonRandom', () => {
  it.each(golden.sample.map((c) => [`seed ${c.seed}, sample(range(${c.n}), ${c.k}) x ${c.draws.length}`, c] as const))('draws as CPython: %s', (_, c) => {
    const r = new PythonRandom(c.seed);
    expect(c.draws.map(() => r.sample(c.n, c.k))).toEqual(c.draws);
  });

  it('gives getrandbits as CPython', () => {
    const r = new PythonRandom(1234);
    expect([1, 13, 32, 7].map((b) => r.getrandbits(b))).toEqual(golden.getrandbits1234);
  });

  it('refuses what CPython refuses', () => {
    expect(() => new PythonRandom(1234).sample(3, 4)).toThrow(/k 4 must be in \[0, 3\]/);
  });
});
