/**
 * The defences a device's owner can set on what leaves the device, and what each promises. Both act on the hidden
 * states at the cut, after the frozen prefix and before the upload, one real position at a time: the vector is
 * clipped to the segment's clip norm C (calibration.ts) and noise is added, drawn from the device's keyed stream
 * (stream.ts). Clipping bounds how far any two tokens' vectors lie apart (2C), which is what makes the noise a local
 * DP guarantee per position:
 * - gaussian (DP-Forward, CCS 2023): N(0, sigma^2 I) with sigma from the analytic Gaussian mechanism, (epsilon, delta)
 *   per position;
 * - metric (Feyisetan et al. 2020; Qu et al. 2021): density proportional to exp(-epsilon' |z|) with epsilon' =
 *   epsilon / 2C (a uniform direction, a Gamma(d, 1 / epsilon') length): epsilon-metric-DP, so epsilon-LDP per
 *   position with delta 0.
 * A row of T positions composes T such releases (at most T epsilon): the promise is per token, not per text.
 *
 * One defence acts before the prefix instead, on the tokens: groups (groups.ts), randomised response within public
 * groups of similar tokens the owner approved, named by their SHA-256; epsilon-indistinguishable within a group,
 * the group itself in clear. Its hidden states are those of the sanitised text, unclipped and without noise.
 */
import { untrustedText } from '../wire/untrusted.ts';
import { refuseUnknownKeys } from '../json/suggest.ts';
import { gaussianSigma } from './dp.ts';

export type Defence =
  | { mechanism: 'none' }
  | { mechanism: 'gaussian'; epsilon: number; delta: number }
  | { mechanism: 'metric'; epsilon: number }
  | { mechanism: 'groups'; epsilon: number; groups: string };

/** The defences that add noise to the hidden states (and clip them first). */
export type OutputNoise = Extract<Defence, { mechanism: 'gaussian' | 'metric' }>;
export const addsNoise = (d: Defence): d is OutputNoise => d.mechanism === 'gaussian' || d.mechanism === 'metric';

/** The largest epsilon a groups setting may name: beyond it a token all but always stays itself. */
export const MAX_GROUPS_EPSILON = 20;

/**
 * The named settings an owner picks from: points of the measured frontier (docs/privacy/README.md gives each one's
 * recovery and cost). medium is the weakest that keeps the strongest attack at 10% of tokens or below there.
 */
export const LEVELS = {
  off: { mechanism: 'none' },
  low: { mechanism: 'metric', epsilon: 32 },
  medium: { mechanism: 'gaussian', epsilon: 8, delta: 1e-5 },
  high: { mechanism: 'gaussian', epsilon: 4, delta: 1e-5 },
} as const satisfies Record<string, Defence>;
export type Level = keyof typeof LEVELS;
export const DEFAULT_LEVEL: Level = 'medium';

/** A defence from an owner's setting: a level's name or {mechanism, epsilon, delta}; throws naming what is wrong. */
export function parseDefence(value: unknown, field = 'defence'): Defence {
  if (typeof value === 'string') {
    // Own names only: `in` would take 'toString' or '__proto__' for a level, and their mechanism for none.
    if (Object.hasOwn(LEVELS, value)) return LEVELS[value as Level];
    throw new Error(`${field}: '${untrustedText(value, 80)}' is not a level (${Object.keys(LEVELS).join(', ')}) or a JSON setting`);
  }
  const d = value as Record<string, unknown>;
  if (typeof d !== 'object' || d === null || Array.isArray(d)) throw new Error(`${field}: must be a level name or {"mechanism", "epsilon", "delta"}`);
  if (!['none', 'gaussian', 'metric', 'groups'].includes(d.mechanism as string))
    throw new Error(`${field}: mechanism must be "none", "gaussian", "metric" or "groups"`);
  const allowed = {
    gaussian: ['mechanism', 'epsilon', 'delta'],
    metric: ['mechanism', 'epsilon'],
    groups: ['mechanism', 'epsilon', 'groups'],
    none: ['mechanism'],
  }[d.mechanism as Defence['mechanism']];
  refuseUnknownKeys(d, allowed, `${field} (mechanism ${JSON.stringify(d.mechanism)})`);
  const epsilon = () => {
    if (typeof d.epsilon !== 'number' || !(d.epsilon > 0 && d.epsilon <= 1e4)) throw new Error(`${field}: epsilon must be a number in (0, 10000]`);
    return d.epsilon;
  };
  switch (d.mechanism) {
    case 'none':
      return { mechanism: 'none' };
    case 'gaussian': {
      if (typeof d.delta !== 'number' || !(d.delta > 0 && d.delta < 0.01)) throw new Error(`${field}: delta must be a number in (0, 0.01)`);
      return { mechanism: 'gaussian', epsilon: epsilon(), delta: d.delta };
    }
    case 'groups': {
      // epsilon 0 is allowed here: a token's group is all that leaves.
      if (typeof d.epsilon !== 'number' || !(d.epsilon >= 0 && d.epsilon <= MAX_GROUPS_EPSILON))
        throw new Error(`${field}: epsilon must be a number in [0, ${MAX_GROUPS_EPSILON}] for groups`);
      if (typeof d.groups !== 'string' || !/^[0-9a-f]{64}$/.test(d.groups))
        throw new Error(`${field}: groups must be the hex SHA-256 the device answered to PUT /groups`);
      return { mechanism: 'groups', epsilon: d.epsilon, groups: d.groups };
    }
    default:
      return { mechanism: 'metric', epsilon: epsilon() };
  }
}

/** The level whose setting this is, if any. */
export function levelOf(defence: Defence): Level | undefined {
  return (Object.keys(LEVELS) as Level[]).find((l) => sameDefence(LEVELS[l], defence));
}

export function sameDefence(a: Defence, b: Defence): boolean {
  return canonicalDefence(a) === canonicalDefence(b);
}

/** One spelling per setting: what the noise's derivation and the manifest carry. */
export function canonicalDefence(d: Defence): string {
  if (d.mechanism === 'gaussian') return JSON.stringify({ mechanism: d.mechanism, epsilon: d.epsilon, delta: d.delta });
  if (d.mechanism === 'metric') return JSON.stringify({ mechanism: d.mechanism, epsilon: d.epsilon });
  if (d.mechanism === 'groups') return JSON.stringify({ mechanism: d.mechanism, epsilon: d.epsilon, groups: d.groups });
  return JSON.stringify({ mechanism: 'none' });
}

/** Human-readable, for tables: "gaussian eps 16, delta 1e-5 (medium)". */
export function describeDefence(d: Defence): string {
  const level = levelOf(d);
  const text = (() => {
    switch (d.mechanism) {
      case 'none':
        return 'none';
      case 'gaussian':
        return `gaussian eps ${d.epsilon}, delta ${d.delta}`;
      case 'metric':
        return `metric eps ${d.epsilon}`;
      case 'groups':
        return `groups ${d.groups.slice(0, 8)} eps ${d.epsilon}`;
    }
  })();
  return level ? `${level}: ${text}` : text;
}

/** The Gaussian's sigma for clip norm C: the sensitivity of a clipped vector is 2C (any two lie within 2C). */
export function gaussianScale(d: Extract<Defence, { mechanism: 'gaussian' }>, clip: number): number {
  return gaussianSigma(d.epsilon, d.delta, 2 * clip);
}

/** The expected noise norm over the clip norm, in d dimensions: about the noise-to-signal ratio R. */
export function noiseToSignal(d: Defence, dims: number): number {
  if (!addsNoise(d)) return 0;
  if (d.mechanism === 'gaussian') return gaussianScale(d, 1) * Math.sqrt(dims);
  // The Gamma(d, 2C / epsilon) length has mean 2Cd / epsilon.
  return (2 * dims) / d.epsilon;
}

/**
 * A norm the defence's noise stays under at a position but with probability below 1e-20: what the server allows on
 * top of the clip before it calls an upload a lie. Gaussian: P(|z| > sqrt(d) + t) <= exp(-t^2 / 2); metric: the
 * Gamma(d, 2C / epsilon) length's Chernoff bound at d + 10 sqrt(d) + 50.
 */
export function noiseNormBound(d: Defence, clip: number, dims: number): number {
  if (!addsNoise(d)) return 0;
  if (d.mechanism === 'gaussian') return gaussianScale(d, clip) * (Math.sqrt(dims) + 10);
  return ((2 * clip) / d.epsilon) * (dims + 10 * Math.sqrt(dims) + 50);
}

/**
 * The most noise per position a server trains under, in clips times sqrt(d): the norm bound on uploads follows the
 * defence a device names, so without a ceiling a device claiming epsilon 1e-300 would lift it past any value (3e38
 * included). Far above every level's noise (high's is under 2 at d = 768) and every useful epsilon (metric's down to
 * about 0.08 at d = 768, 0.11 at 2048, 0.15 at 4096), far below norms that overflow the next block's (1e19 and up).
 */
export const MAX_NOISE_NORM = 1000;

/**
 * The defence's noise bound (noiseNormBound) where it is within MAX_NOISE_NORM, or why uploads under it would carry
 * nothing but noise.
 */
export function ceiledNoiseBound(d: Defence, clip: number, dims: number): number | string {
  const noise = noiseNormBound(d, clip, dims);
  const ceiling = MAX_NOISE_NORM * clip * Math.sqrt(dims);
  if (noise <= ceiling) return noise;
  return `defence (${describeDefence(d)}) allows noise of norm up to ${noise.toPrecision(3)}, beyond the ${ceiling.toPrecision(3)} (${MAX_NOISE_NORM} clips times sqrt(d)) the server trains under: such uploads carry nothing but noise`;
}
