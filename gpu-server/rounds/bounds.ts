/**
 * How large a device's hidden states may honestly be at its cut. The server runs the public calibration text through
 * the frozen blocks itself, as every device does to fix its clip norm, so the bound comes from the model and never
 * from what a device says. Values beyond it (3e38 in every position overflows the next block's norm into NaN) mark
 * the batch as a lie.
 */
import { addsNoise, ceiledNoiseBound, type Defence } from '../../core/privacy/defence.ts';
import { CALIBRATION_SEQ_LEN, CALIBRATION_TEXTS, medianClip, norm, realPositionNorms } from '../../core/privacy/defend.ts';
import type { Tokenizer } from '../../core/tokenizer/tokenizer.ts';
import type { Trainer } from '../train/trainer.ts';

/** Headroom over the calibration text's largest norm for undefended uploads: real text strays, not by this much. */
export const CLEAN_NORM_HEADROOM = 8;
/** A device's clip may exceed the server's by this factor (int8 weights and runtimes move norms by a few percent). */
export const CLIP_TOLERANCE = 1.5;

export interface CutCalibration {
  /** The segment's clip norm as the server computes it. */
  clip: number;
  /** The largest norm of a real position of the calibration text. */
  maxNorm: number;
}

export async function calibrateCut(trainer: Trainer, tokenizer: Tokenizer, padTokenId: number, cut: number): Promise<CutCalibration> {
  const enc = tokenizer.encodeBatch(CALIBRATION_TEXTS, { maxLength: CALIBRATION_SEQ_LEN, padTokenId });
  const hidden = await trainer.hiddenAt(enc.ids, enc.attentionMask, enc.rows, enc.seqLen, cut);
  const norms = realPositionNorms(hidden, enc.attentionMask, hidden.length / enc.attentionMask.length);
  return { clip: medianClip(norms), maxNorm: Math.max(...norms) };
}

/** The largest norm any position of an upload under this defence may have, or why the manifest's clip is refused. */
export function uploadNormBound(cal: CutCalibration, defence: Defence, clip: number | undefined, dims: number): number | string {
  // Undefended, or sanitised before the prefix: the hidden states of real tokens, unclipped.
  if (!addsNoise(defence)) return CLEAN_NORM_HEADROOM * cal.maxNorm;
  if (clip === undefined || !(clip <= CLIP_TOLERANCE * cal.clip))
    return `the manifest's clip ${clip} is more than ${CLIP_TOLERANCE}x the segment's clip ${cal.clip} (from the calibration text)`;
  // A claimed epsilon near zero would admit any value (core/privacy/defence.ts, MAX_NOISE_NORM).
  const noise = ceiledNoiseBound(defence, clip, dims);
  if (typeof noise === 'string') return `the manifest's ${noise}`;
  // Clipped positions are at most the clip (fp16 rounding aside), then noise is added.
  return clip * 1.001 + noise;
}

/** Index of the first position [rows * seq] whose norm exceeds `bound`, or -1. */
export function positionOver(hidden: Float32Array, dims: number, bound: number): number {
  for (let p = 0; p * dims < hidden.length; p++) if (!(norm(hidden.subarray(p * dims, (p + 1) * dims)) <= bound)) return p;
  return -1;
}
