/**
 * What an activation manifest and an activation object must be before anything of them is trained on: the manifest
 * against the plan (who, which round, cut, segment, dtype, rows, batch shapes, defence and clip), each object against
 * its manifest entry (size, SHA-256, metadata, shapes, dtype, labels within the task, each position's norm within
 * the bound the model gives at the cut). Each check says what is wrong, in words a device cannot steer.
 */
import { IGNORE_INDEX } from '../../core/data/generation.ts';
import { sha256Hex } from '../../core/auth/signing.ts';
import { decodeActivationBatch, type ActivationBatch } from '../../core/wire/activations.ts';
import type { ActivationDType, ActivationManifest, ManifestBatch } from '../../core/wire/round.ts';
import { addsNoise, canonicalDefence, parseDefence, type Defence } from '../../core/privacy/defence.ts';
import { jsonText, untrustedText } from '../../core/wire/untrusted.ts';
import { positionOver } from './bounds.ts';

export interface FeedSource {
  runId: string;
  deviceId: string;
  /** The round whose activations are read: an earlier one when the server reuses cached activations. */
  round: number;
  cut: number;
  nEmbd: number;
  /**
   * What a batch's labels must be: one class per row in [0, classes), or (perToken) one next-token id per position
   * in [0, classes) or IGNORE_INDEX, with at least one labelled position.
   */
  labels: { perToken: boolean; classes: number };
  /** The batches the plan expects: the manifest must list exactly indices 0..batches-1. */
  batches: number;
  /** What the manifest must say as the plan does: the segment, the dtype, the rows in all. */
  modelSha256: string;
  dtype: ActivationDType;
  rows: number;
  /** The most rows and positions a batch may have (the run's batch size; its seqLen within the model's positions). */
  batchSize: number;
  seqLen: number;
  /** The largest norm a position may have under the manifest's defence (bounds.ts), or why its clip is refused. */
  normBound: (defence: Defence, clip: number | undefined) => number | string;
  /** The largest object a batch of the plan can be: nothing larger is downloaded. */
  maxBatchBytes: number;
}

export interface VerifiedBatch extends ActivationBatch {
  key: string;
  bytes: number;
}

/** A value of a device's manifest as a message quotes it: as JSON, cut short and escaped (core/wire/untrusted.ts). */
const quoted = (value: unknown) => untrustedText(jsonText(value), 80);

/** The manifest, checked against the plan, or what is wrong with it. */
export function parseManifest(bytes: Uint8Array, src: FeedSource): ActivationManifest | string {
  let m: ActivationManifest;
  try {
    m = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    return `the manifest is not JSON (${bytes.byteLength} bytes): ${untrustedText((e as Error).message, 200)}`;
  }
  if (typeof m !== 'object' || m === null || m.version !== 1 || !Array.isArray(m.batches)) return 'the manifest is not a version-1 activation manifest';
  if (m.device !== src.deviceId || m.runId !== src.runId || m.round !== src.round)
    return `the manifest is for ${quoted(m.device)}/${quoted(m.runId)}/${quoted(m.round)}`;
  if (m.cut !== src.cut) return `the manifest says cut ${quoted(m.cut)}, the plan says ${src.cut}`;
  if (m.modelSha256 !== src.modelSha256) return `the manifest names segment ${quoted(m.modelSha256)}, the plan ${src.modelSha256}`;
  if (m.dtype !== src.dtype) return `the manifest says dtype ${quoted(m.dtype)}, the run's is ${src.dtype}`;
  if (m.batches.length !== src.batches) return `the manifest lists ${m.batches.length} batches, the plan ${src.batches}`;
  if (m.rows !== src.rows) return `the manifest says ${quoted(m.rows)} rows, the plan ${src.rows}`;
  let rows = 0;
  for (const [i, b] of m.batches.entries()) {
    const whole = (v: unknown, max: number) => Number.isSafeInteger(v) && (v as number) > 0 && (v as number) <= max;
    if (typeof b !== 'object' || b === null || b.index !== i)
      return `the manifest's batch ${i} has index ${quoted(b?.index)}: indices must be 0..${src.batches - 1} in order`;
    if (
      !whole(b.rows, src.batchSize) ||
      !whole(b.seqLen, src.seqLen) ||
      !whole(b.bytes, src.maxBatchBytes) ||
      typeof b.sha256 !== 'string' ||
      !/^[0-9a-f]{64}$/.test(b.sha256)
    ) {
      return `the manifest's batch ${i} needs rows in 1..${src.batchSize}, seqLen in 1..${src.seqLen}, bytes in 1..${src.maxBatchBytes} (a batch of the plan) and a hex sha256`;
    }
    rows += b.rows;
  }
  if (rows !== m.rows) return `the manifest's batches hold ${rows} rows, it says ${m.rows}`;
  try {
    m.defence = parseDefence(m.defence, "the manifest's defence");
  } catch (e) {
    return (e as Error).message;
  }
  if (addsNoise(m.defence) && !(typeof m.clip === 'number' && m.clip > 0 && Number.isFinite(m.clip)))
    return `the manifest's defence clips, but its clip is ${quoted(m.clip)}`;
  return m;
}

export async function verify(
  bytes: Uint8Array,
  entry: ManifestBatch,
  src: FeedSource,
  key: string,
  defence: string,
  normBound: number,
): Promise<VerifiedBatch | string> {
  if (bytes.byteLength !== entry.bytes) return `size ${bytes.byteLength} differs from the manifest's ${entry.bytes}`;
  if ((await sha256Hex(bytes)) !== entry.sha256) return 'SHA-256 differs from the manifest';
  let b: ActivationBatch;
  try {
    b = decodeActivationBatch(bytes, key);
  } catch (e) {
    return (e as Error).message;
  }
  if (b.device !== src.deviceId || b.runId !== src.runId || b.round !== src.round || b.index !== entry.index)
    return `metadata says ${quoted(b.device)}/${quoted(b.runId)}/round ${b.round}/batch ${b.index}`;
  if (b.cut !== src.cut) return `cut ${b.cut}, the plan says ${src.cut}`;
  if ((b.defence ?? canonicalDefence({ mechanism: 'none' })) !== defence)
    return `defence ${b.defence === undefined ? 'none' : quoted(b.defence)}, the manifest says ${defence}`;
  if (b.dtype !== src.dtype) return `hidden states are ${b.dtype}, the run's dtype is ${src.dtype}`;
  if (b.nEmbd !== src.nEmbd) return `hidden size ${b.nEmbd}, the model's is ${src.nEmbd}`;
  if (b.rows !== entry.rows || b.seqLen !== entry.seqLen) return `shape [${b.rows}, ${b.seqLen}] differs from the manifest's [${entry.rows}, ${entry.seqLen}]`;
  const masked = maskProblem(b.mask, b.rows, b.seqLen);
  if (masked) return masked;
  // A NaN or an infinity would reach the adapters and every checkpoint after; a label outside the task, the loss.
  const { perToken, classes } = src.labels;
  if (b.labels.length !== (perToken ? b.rows * b.seqLen : b.rows)) return `${b.labels.length} labels; the task needs one per ${perToken ? 'position' : 'row'}`;
  const label = b.labels.findIndex((l) => !((l >= 0 && l < classes) || (perToken && l === IGNORE_INDEX)));
  if (label >= 0) return `${perToken ? 'position' : 'row'} ${label}'s label ${b.labels[label]} is outside the task's [0, ${classes})`;
  if (perToken && b.labels.every((l) => l === IGNORE_INDEX)) return 'no position carries a label: nothing to learn from';
  // NaN, infinities and finite values past what the model gives at this cut (3e38 overflows the next block's norm).
  const over = positionOver(b.hidden, b.nEmbd, normBound);
  if (over >= 0)
    return `position ${over}'s hidden state is not finite or its norm exceeds ${normBound.toPrecision(4)}, the bound at cut ${src.cut} under its defence`;
  return { ...b, key, bytes: bytes.byteLength };
}

/**
 * What is wrong with an attention mask [rows, seqLen], if anything: the server's attention scales and fills with the
 * mask's values and counts positions from their sum, so only what a tokenizer gives passes: 0s and 1s, each row's
 * real positions first (right-padded, as every device pads) and at least one of them.
 */
function maskProblem(mask: ArrayLike<number>, rows: number, seqLen: number): string | undefined {
  for (let r = 0; r < rows; r++) {
    if (mask[r * seqLen] !== 1) return `row ${r}'s attention mask starts with ${mask[r * seqLen]}: a row starts with a real position (1)`;
    for (let p = 1, last = 1; p < seqLen; p++) {
      const m = mask[r * seqLen + p];
      if ((m !== 0 && m !== 1) || m > last) return `row ${r}'s attention mask is ${m} at position ${p}: right-padded 1s then 0s only`;
      last = m;
    }
  }
  return undefined;
}
