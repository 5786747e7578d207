/**
 * One batch of activations as it travels from a device to the server: a safetensors object with the hidden states
 * at the cut, the attention mask and the labels, and metadata saying whose, which round and which cut it is.
 */
import { parseSafetensors, serializeSafetensors } from '../tensors/safetensors.ts';
import { fromFloat32, toFloat32 } from '../tensors/tensor.ts';
import type { ActivationDType } from './round.ts';

export interface ActivationBatch {
  device: string;
  runId: string;
  round: number;
  cut: number;
  /** The batch's index in its device's round (0, 1, ...); `rows` counts its rows. */
  index: number;
  /** [rows, seqLen, d] */
  hidden: Float32Array;
  mask: Int32Array;
  /** [rows] class indices (classification), or [rows, seqLen] next-token ids with IGNORE_INDEX (generation). */
  labels: Int32Array;
  rows: number;
  seqLen: number;
  nEmbd: number;
  /** The defence the hidden states carry (canonicalDefence), as the manifest names it. */
  defence?: string;
  /** How the hidden states were stored (set by decoding). */
  dtype?: ActivationDType;
}

export function encodeActivationBatch(b: ActivationBatch, dtype: ActivationDType): Uint8Array {
  return serializeSafetensors(
    {
      hidden_states: fromFloat32(b.hidden, [b.rows, b.seqLen, b.nEmbd], dtype === 'fp16' ? 'F16' : 'F32'),
      attention_mask: { dtype: 'I32', shape: [b.rows, b.seqLen], data: b.mask },
      labels: { dtype: 'I32', shape: b.labels.length === b.rows * b.seqLen && b.labels.length !== b.rows ? [b.rows, b.seqLen] : [b.rows], data: b.labels },
    },
    { device: b.device, run: b.runId, round: String(b.round), cut: String(b.cut), batch: String(b.index), ...(b.defence ? { defence: b.defence } : {}) },
  );
}

/** Decodes and checks an activation object; errors name the object. */
export function decodeActivationBatch(bytes: Uint8Array, name = 'activation batch'): ActivationBatch {
  const { tensors, metadata } = parseSafetensors(bytes, name);
  const need = (key: string) => tensors.get(key) ?? fail(`missing tensor '${key}'`);
  const fail = (message: string): never => {
    throw new Error(`${name}: ${message}`);
  };
  const hidden = need('hidden_states');
  const mask = need('attention_mask');
  const labels = need('labels');
  if (hidden.dtype !== 'F32' && hidden.dtype !== 'F16') fail(`tensor 'hidden_states' is ${hidden.dtype}: activations travel as F32 or F16`);
  if (hidden.shape.length !== 3) fail(`tensor 'hidden_states' has shape ${JSON.stringify(hidden.shape)}, expected [rows, seq, d]`);
  const [rows, seqLen, nEmbd] = hidden.shape;
  if (mask.dtype !== 'I32' || mask.shape.join() !== [rows, seqLen].join()) fail(`tensor 'attention_mask' must be I32 [${rows}, ${seqLen}]`);
  if (labels.dtype !== 'I32' || (labels.shape.join() !== String(rows) && labels.shape.join() !== [rows, seqLen].join()))
    fail(`tensor 'labels' must be I32 [${rows}] or [${rows}, ${seqLen}]`);
  const num = (key: string) => {
    const v = Number(metadata[key]);
    return Number.isSafeInteger(v) ? v : fail(`metadata '${key}' missing or not an integer`);
  };
  return {
    device: metadata.device ?? fail("metadata 'device' missing"),
    runId: metadata.run ?? fail("metadata 'run' missing"),
    round: num('round'),
    cut: num('cut'),
    index: num('batch'),
    hidden: toFloat32(hidden),
    mask: mask.data as Int32Array,
    labels: labels.data as Int32Array,
    rows,
    seqLen,
    nEmbd,
    ...(metadata.defence ? { defence: metadata.defence } : {}),
    dtype: hidden.dtype === 'F16' ? 'fp16' : 'fp32',
  };
}
