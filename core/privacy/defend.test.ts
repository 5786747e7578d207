import { describe, expect, it } from 'vitest';
import { Random } from '../random.ts';
import { gaussianDelta } from './dp.ts';
import { calibrationClip, defendHidden, type DefenceRun } from './defend.ts';
import { gaussianScale, LEVELS, parseDefence, type Defence } from './defence.ts';
import { defenceKey } from './stream.ts';
import { paddingZeroed } from '../../tests/fixtures.ts';

const d = 16;
const key = defenceKey('a device secret of thirty-two chars!');
const gaussian: Defence = { mechanism: 'gaussian', epsilon: 16, delta: 1e-5 };
const run = (defence: Defence, over: Partial<DefenceRun> = {}): DefenceRun => ({ defence, clip: 2, key, segment: 'a'.repeat(64), ...over });

/**
 * A "prefix" whose hidden state at p depends on the tokens 0..p only, as a causal model's does: the row's running
 * token sum and its position, spread over d.
 */
function causalHidden(ids: number[][], seq: number): { hidden: Float32Array; ids: Int32Array; mask: Int32Array } {
  const rows = ids.length;
  const hidden = new Float32Array(rows * seq * d);
  const flat = new Int32Array(rows * seq);
  const mask = new Int32Array(rows * seq);
  ids.forEach((row, r) => {
    let sum = 0;
    for (let p = 0; p < seq; p++) {
      if (p >= row.length) {
        // What a prefix gives a padding position: a copy of the row's last real vector.
        hidden.copyWithin((r * seq + p) * d, (r * seq + row.length - 1) * d, (r * seq + row.length) * d);
        continue;
      }
      sum += row[p];
      flat[r * seq + p] = row[p];
      mask[r * seq + p] = 1;
      for (let k = 0; k < d; k++) hidden[(r * seq + p) * d + k] = Math.sin(sum * (k + 1) + p) * 0.3;
    }
  });
  return { hidden, ids: flat, mask };
}

function row(out: Float32Array, r: number, p: number, seq: number): Float32Array {
  return out.subarray((r * seq + p) * d, (r * seq + p + 1) * d);
}

describe('the device defence', () => {
  it('uploads the same row bit-equal in any batch, order or sequence length, so copies average to one upload', () => {
    const a = [5, 9, 2, 7];
    const b = [3, 1];
    const together = causalHidden([a, b], 6);
    defendHidden(together.hidden, together.ids, together.mask, 2, 6, d, run(gaussian));
    const alone = causalHidden([b, a], 4);
    defendHidden(alone.hidden, alone.ids, alone.mask, 2, 4, d, run(gaussian));
    for (let p = 0; p < a.length; p++) expect(row(alone.hidden, 1, p, 4)).toEqual(row(together.hidden, 0, p, 6));
    for (let p = 0; p < b.length; p++) expect(row(alone.hidden, 0, p, 4)).toEqual(row(together.hidden, 1, p, 6));
    // A row sharing a beginning shares that beginning's noise (the same hidden states), not the rest.
    const branch = causalHidden([[5, 9, 4]], 3);
    defendHidden(branch.hidden, branch.ids, branch.mask, 1, 3, d, run(gaussian));
    expect(row(branch.hidden, 0, 1, 3)).toEqual(row(together.hidden, 0, 1, 6));
    expect(row(branch.hidden, 0, 2, 3)).not.toEqual(row(together.hidden, 0, 2, 6));
  });

  it('draws other noise for another key, segment or setting (copies under two settings never cancel)', () => {
    const base = () => causalHidden([[5, 9, 2]], 3);
    const outputs = [
      run(gaussian),
      run(gaussian, { key: defenceKey('another secret of thirty-two chars') }),
      run(gaussian, { segment: 'b'.repeat(64) }),
      run({ ...gaussian, epsilon: 8 }),
    ].map((r) => {
      const x = base();
      defendHidden(x.hidden, x.ids, x.mask, 1, 3, d, r);
      return Array.from(x.hidden);
    });
    const clean = Array.from(base().hidden);
    for (let i = 0; i < outputs.length; i++)
      for (let j = i + 1; j < outputs.length; j++) {
        // Noise of two settings differs in direction too: not one a multiple of the other.
        const di = outputs[i].map((v, k) => v - clean[k]);
        const dj = outputs[j].map((v, k) => v - clean[k]);
        const cos = di.reduce((s, v, k) => s + v * dj[k], 0) / Math.hypot(...di) / Math.hypot(...dj);
        expect(Math.abs(cos)).toBeLessThan(0.9);
      }
  });

  it('zeroes padding (no copies of a real vector) and clips every real vector before the noise', () => {
    const x = causalHidden(
      [
        [5, 9],
        [1, 2, 3, 4],
      ],
      4,
    );
    for (let i = 0; i < x.hidden.length; i++) x.hidden[i] *= 100;
    defendHidden(x.hidden, x.ids, x.mask, 2, 4, d, run({ mechanism: 'none' }));
    expect(Array.from(x.hidden.subarray(2 * d, 4 * d)).every((v) => v === 0)).toBe(true);
    expect(Math.hypot(...row(x.hidden, 1, 3, 4))).toBeGreaterThan(2);
    const clipped = causalHidden([[5, 9]], 2);
    for (let i = 0; i < clipped.hidden.length; i++) clipped.hidden[i] *= 100;
    defendHidden(clipped.hidden, clipped.ids, clipped.mask, 1, 2, d, run({ mechanism: 'gaussian', epsilon: 1e4, delta: 1e-5 }));
    // Clipped to 2, then noise of sigma 0.03 or so in 16 dimensions.
    expect(Math.hypot(...row(clipped.hidden, 0, 0, 2))).toBeLessThan(2.3);
  });

  it('adds Gaussian noise of the sigma its epsilon states, and metric noise of the length its epsilon states', () => {
    const rng = new Random(3);
    const rows = Array.from({ length: 400 }, () => Array.from({ length: 8 }, () => Math.floor(rng.uniform() * 50000)));
    const measure = (defence: Defence) => {
      const x = causalHidden(rows, 8);
      const clean = Float32Array.from(x.hidden);
      defendHidden(x.hidden, x.ids, x.mask, rows.length, 8, d, run(defence, { clip: 5 }));
      const noise = x.hidden.map((v, i) => v - clean[i]);
      const norms = Array.from({ length: noise.length / d }, (_, i) => Math.hypot(...noise.subarray(i * d, (i + 1) * d)));
      return { std: Math.sqrt(noise.reduce((s, v) => s + v * v, 0) / noise.length), meanNorm: norms.reduce((a, b) => a + b, 0) / norms.length };
    };
    const sigma = gaussianScale(gaussian as Extract<Defence, { mechanism: 'gaussian' }>, 5);
    // The stated (16, 1e-5) holds at that sigma for the clipped sensitivity 2C = 10, and only just.
    expect(gaussianDelta(16, sigma, 10)).toBeLessThanOrEqual(1e-5 * (1 + 1e-6));
    expect(gaussianDelta(16, sigma * 0.95, 10)).toBeGreaterThan(1e-5);
    expect(measure(gaussian).std / sigma).toBeCloseTo(1, 1);
    // Metric DP: a Gamma(d, 2C / epsilon) length, mean 2Cd / epsilon = 2 * 5 * 16 / 32 = 5.
    expect(measure({ mechanism: 'metric', epsilon: 32 }).meanNorm / 5).toBeCloseTo(1, 1);
  });

  it('refuses a batch that is not right-padded', () => {
    expect(() => defendHidden(new Float32Array(2 * d), [0, 1], [0, 1], 1, 2, d, run(gaussian))).toThrow('not right-padded');
  });

  it('takes its clip from the calibration text: the median norm, three digits', () => {
    const hidden = Float32Array.from([3, 4, 0.6, 0.8, 6, 8, 100, 100]);
    expect(calibrationClip(hidden, [1, 1, 1, 0], 2)).toBe(5);
  });
});

describe('the owner setting', () => {
  it('reads levels and settings, and refuses anything else by name', () => {
    expect(parseDefence('high')).toEqual(LEVELS.high);
    expect(parseDefence({ mechanism: 'metric', epsilon: 8 })).toEqual({ mechanism: 'metric', epsilon: 8 });
    expect(() => parseDefence('maximum')).toThrow("'maximum' is not a level");
    // Names every object has are no level: taken, they left the text undefended (their mechanism read as none).
    for (const name of ['toString', 'constructor', '__proto__', 'hasOwnProperty']) expect(() => parseDefence(name)).toThrow(`'${name}' is not a level`);
    // An owner's or a device's text is quoted cut short and escaped.
    expect(() => parseDefence(`x\u001b[2J${'A'.repeat(1000)}`)).toThrow(/^defence: 'x\\u\{1b\}\[2JA{75}\.\.\. \(925 more characters\)' is not a level/);
    expect(() => parseDefence({ mechanism: 'gaussian', epsilon: 8 })).toThrow('delta must be');
    expect(() => parseDefence({ mechanism: 'gaussian', epsilon: 8, delta: 1e-5, sigma: 0 })).toThrow(
      `defence (mechanism "gaussian"): unknown field 'sigma'; fields: mechanism, epsilon, delta`,
    );
    expect(() => parseDefence({ mechanism: 'gaussian', epsilon: 8, detla: 1e-5 })).toThrow("unknown field 'detla'; did you mean 'delta'?");
    expect(() => parseDefence({ mechanism: 'laplace', epsilon: 8 })).toThrow('mechanism must be');
    expect(() => parseDefence({ mechanism: 'metric', epsilon: -1 })).toThrow('epsilon must be');
    const groups = { mechanism: 'groups', epsilon: 0, groups: 'ab'.repeat(32) };
    expect(parseDefence(groups)).toEqual(groups);
    expect(() => parseDefence({ ...groups, groups: 'mine' })).toThrow('groups must be the hex SHA-256 the device answered to PUT /groups');
    expect(() => parseDefence({ ...groups, epsilon: 21 })).toThrow('epsilon must be a number in [0, 20] for groups');
    expect(() => parseDefence({ ...groups, delta: 1e-5 })).toThrow(`(mechanism "groups"): unknown field 'delta'; fields: mechanism, epsilon, groups`);
  });

  it('groups add no noise after the prefix: real vectors leave as they are, padding as zeros', () => {
    const { hidden, ids, mask } = causalHidden([[5, 6, 7], [8]], 4);
    const out = Float32Array.from(hidden);
    defendHidden(out, ids, mask, 2, 4, d, run({ mechanism: 'groups', epsilon: 0, groups: 'ab'.repeat(32) }));
    expect(out).toEqual(paddingZeroed(hidden, mask, d));
  });
});
