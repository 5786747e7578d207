import { describe, expect, it } from 'vitest';
import { gaussianScale, LEVELS, MAX_NOISE_NORM, type Defence } from '../../core/privacy/defence.ts';
import { CLEAN_NORM_HEADROOM, uploadNormBound } from './bounds.ts';

// The bound on a device's uploads comes from the model (the calibration) and the defence its manifest names: a
// device may name any defence, so the noise it claims is bounded too.
const cal = { clip: 10, maxNorm: 30 };
const D = 768;

describe('the norm bound of an upload', () => {
  it('allows every level and stays near what its noise reaches', () => {
    expect(uploadNormBound(cal, LEVELS.off, undefined, D)).toBe(CLEAN_NORM_HEADROOM * 30);
    for (const level of ['low', 'medium', 'high'] as const) {
      const bound = uploadNormBound(cal, LEVELS[level], 10, D);
      expect(typeof bound, level).toBe('number');
      expect(bound as number, level).toBeLessThan(10 * 100 * Math.sqrt(D));
    }
    // Gaussian: sigma sqrt(d) is the noise's typical norm; the bound sits 10 sigma above it, over the clip.
    const medium = LEVELS.medium as Extract<Defence, { mechanism: 'gaussian' }>;
    expect(uploadNormBound(cal, medium, 10, D)).toBeCloseTo(10 * 1.001 + gaussianScale(medium, 10) * (Math.sqrt(D) + 10), 6);
    expect(uploadNormBound(cal, LEVELS.medium, 16, D)).toBe("the manifest's clip 16 is more than 1.5x the segment's clip 10 (from the calibration text)");
  });

  it('refuses a claimed epsilon so small that its bound would admit any value', () => {
    for (const defence of [
      { mechanism: 'metric', epsilon: 1e-300 },
      { mechanism: 'gaussian', epsilon: 1e-9, delta: 1e-5 },
    ] as Defence[]) {
      const bound = uploadNormBound(cal, defence, 10, D);
      expect(bound).toMatch(
        /^the manifest's defence \(.*\) allows noise of norm up to .*, beyond the 2\.77e\+5 \(1000 clips times sqrt\(d\)\) the server trains under/,
      );
    }
    // Just inside the ceiling: metric at epsilon 0.08 (a setting whose uploads are mostly noise, still an owner's choice).
    const ceiling = MAX_NOISE_NORM * 10 * Math.sqrt(D);
    expect(uploadNormBound(cal, { mechanism: 'metric', epsilon: 0.08 }, 10, D)).toBeLessThan(ceiling + 11);
    expect(typeof uploadNormBound(cal, { mechanism: 'metric', epsilon: 0.07 }, 10, D)).toBe('string');
  });
});
