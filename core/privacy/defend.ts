/**
 * The device's side of a defence: applied to a batch's hidden states after the frozen prefix, before the upload.
 * Every real position is clipped and noised (defence.ts); padding positions are zeroed: the server ignores them, and
 * uploaded as they come out of the prefix they would be copies of one vector of the row, free extra views of it.
 */
import { addsNoise, canonicalDefence, gaussianScale, type Defence, type OutputNoise } from './defence.ts';
import { positionSeeds, SeededStream } from './stream.ts';
import { rowLength } from './attacks/activations.ts';

/** Public sentences every party can run through a segment to fix its clip norm: nothing of any owner's text. */
export const CALIBRATION_TEXTS = [
  'The weather report said it would rain in the afternoon, so the match was moved to the next day.',
  'She opened the old book and read the first page aloud to the children sitting on the floor.',
  'A new bridge across the river will connect the two towns by the end of next year.',
  'The committee met on Tuesday to discuss the budget, the schedule and the list of speakers.',
  'He planted tomatoes, beans and a row of sunflowers along the fence behind the house.',
  'The museum is open every day except Monday, and entry is free for students.',
  'After a long delay the train finally left the station shortly before midnight.',
  'Most of the questions on the test were about fractions, decimals and simple equations.',
];
/** The calibration text's sequence length: the same for every party, whatever a round's seqLen. */
export const CALIBRATION_SEQ_LEN = 32;

/** The norms of the hidden states [positions, d] at the real positions of `mask`, in position order. */
export function realPositionNorms(hidden: Float32Array, mask: ArrayLike<number>, d: number): number[] {
  const norms: number[] = [];
  for (let p = 0; p < mask.length; p++) if (mask[p]) norms.push(norm(hidden.subarray(p * d, (p + 1) * d)));
  return norms;
}

/**
 * The clip norm of a segment: the median norm of its hidden states over the calibration text's real positions,
 * rounded to three significant digits so that runtimes whose float results differ in the last bits agree on it.
 */
export function calibrationClip(hidden: Float32Array, mask: ArrayLike<number>, d: number): number {
  return medianClip(realPositionNorms(hidden, mask, d));
}

/** calibrationClip from the real positions' norms. */
export function medianClip(norms: readonly number[]): number {
  if (!norms.length) throw new Error('calibration: no real positions');
  const median = [...norms].sort((a, b) => a - b)[Math.floor(norms.length / 2)];
  if (!(median > 0) || !Number.isFinite(median)) throw new Error(`calibration: the segment's median norm is ${median}`);
  return Number(median.toPrecision(3));
}

/** What a device applies a defence with: its key, the segment's clip, and the segment it ran. */
export interface DefenceRun {
  defence: Defence;
  /** Clip norm C of the segment (calibrationClip). */
  clip: number;
  /** defenceKey(device secret). */
  key: Uint8Array;
  /** SHA-256 of the segment: the same tokens at another cut or segment get other noise. */
  segment: string;
}

/** The context every seed of a run hangs on: segment, setting and clip (copies at two settings never share noise). */
export function defenceContext(run: Omit<DefenceRun, 'key'>): Uint8Array {
  return new TextEncoder().encode(`${run.segment}\n${canonicalDefence(run.defence)}\n${run.clip}`);
}

/**
 * Applies the defence in place to hidden [rows, seq, d] with token ids and mask [rows, seq] (right-padded rows: real
 * positions first, as every tokenizer of the project pads).
 */
export function defendHidden(
  hidden: Float32Array,
  ids: ArrayLike<number>,
  mask: ArrayLike<number>,
  rows: number,
  seq: number,
  d: number,
  run: DefenceRun,
): void {
  if (hidden.length !== rows * seq * d || ids.length !== rows * seq || mask.length !== rows * seq)
    throw new Error(`defence: hidden ${hidden.length}, ids ${ids.length}, mask ${mask.length} do not fit [${rows}, ${seq}, ${d}]`);
  const { defence, clip, key } = run;
  const context = defenceContext(run);
  const noise = addsNoise(defence);
  const sigma = defence.mechanism === 'gaussian' ? gaussianScale(defence, clip) : 0;
  const stream = new SeededStream(key, defence.mechanism === 'gaussian' ? d + 1 : 2 * d + 2);
  const z = new Float64Array(d);
  for (let r = 0; r < rows; r++) {
    const length = rowLength(mask, r, seq);
    for (let p = length; p < seq; p++) if (mask[r * seq + p]) throw new Error(`defence: row ${r} is not right-padded (position ${p} is real after padding)`);
    const rowIds = Array.from({ length }, (_, p) => ids[r * seq + p]);
    const seeds = noise ? positionSeeds(key, context, rowIds, length) : [];
    for (let p = 0; p < seq; p++) {
      const v = hidden.subarray((r * seq + p) * d, (r * seq + p + 1) * d);
      if (p >= length) {
        v.fill(0);
        continue;
      }
      if (!noise) continue;
      const size = norm(v);
      if (size > clip) for (let k = 0; k < d; k++) v[k] *= clip / size;
      stream.reset(seeds[p]).normals(z);
      if (defence.mechanism === 'gaussian') {
        for (let k = 0; k < d; k++) v[k] += sigma * z[k];
      } else {
        // A uniform direction and a Gamma(d, 2C / epsilon) length: the sum of d unit exponentials, scaled.
        let length2 = 0;
        for (let k = 0; k < d; k++) length2 += z[k] * z[k];
        let gamma = 0;
        for (let k = 0; k < d; k++) gamma -= Math.log(stream.uniform());
        const scale = (gamma * 2 * clip) / (defence as OutputNoise).epsilon / Math.sqrt(length2);
        for (let k = 0; k < d; k++) v[k] += scale * z[k];
      }
    }
  }
}

/** A vector's Euclidean norm, in float64. */
export function norm(v: ArrayLike<number>): number {
  let s = 0;
  for (let k = 0; k < v.length; k++) s += v[k] * v[k];
  return Math.sqrt(s);
}
