/**
 * How a device encodes its rows for a round: the token ids, mask and labels its prefix runs on. Kept apart from the
 * prefix (forward.ts) so that what the server's request can change of a row is plain to read and test.
 */
import { encodeGenerationBatch, type GenerationExample } from '../../../core/data/generation.ts';
import { textInput, type Example } from '../../../core/data/shard.ts';
import { CALIBRATION_SEQ_LEN, CALIBRATION_TEXTS } from '../../../core/privacy/defend.ts';
import type { Tokenizer } from '../../../core/tokenizer/tokenizer.ts';
import type { RoundRequest } from '../../../core/wire/round.ts';

/** A shard row of either task. */
export type Row = Example | GenerationExample;

type Request = Pick<RoundRequest, 'task' | 'seqLen' | 'padTokenId'>;

/** A batch's token ids [rows, seqLen], mask and labels: one per row, or one per position (generation). */
export interface EncodedRows {
  rows: number;
  seqLen: number;
  ids: Int32Array;
  attentionMask: Int32Array;
  labels: Int32Array;
}

/**
 * Rows as the round encodes them. What comes before a position, and so its hidden state and the seed of its noise,
 * must not depend on the request. A classification row is encoded whole and cut at the round's seqLen from the right,
 * so any length ends it sooner and starts no token elsewhere (cutting a pair's longer text first would move its
 * second text at each length). A generation row keeps a long prompt's end so that its completion fits, which moves
 * its tokens with the length: its owner approved the one length it runs at (segmentRefusal).
 */
export function encodeRows(tokenizer: Tokenizer, rows: readonly Row[], r: Request): EncodedRows {
  if (r.task === 'generation') return encodeGenerationBatch(tokenizer, rows as GenerationExample[], r.seqLen, r.padTokenId);
  const enc = tokenizer.encodeBatch((rows as Example[]).map(textInput), { maxLength: WHOLE, padTokenId: r.padTokenId });
  return cutRows({ ...enc, labels: Int32Array.from(rows as Example[], (row) => row.label) }, r.seqLen, r.padTokenId);
}

/** A length no row reaches: rows are encoded whole. */
const WHOLE = Number.MAX_SAFE_INTEGER;

/** Right-padded rows [rows, seq], one label a row, cut to their first `seqLen` positions. */
function cutRows(enc: EncodedRows, seqLen: number, padTokenId: number): EncodedRows {
  if (enc.seqLen <= seqLen) return enc;
  const ids = new Int32Array(enc.rows * seqLen).fill(padTokenId);
  const attentionMask = new Int32Array(enc.rows * seqLen);
  for (let r = 0; r < enc.rows; r++) {
    ids.set(enc.ids.subarray(r * enc.seqLen, r * enc.seqLen + seqLen), r * seqLen);
    attentionMask.set(enc.attentionMask.subarray(r * enc.seqLen, r * enc.seqLen + seqLen), r * seqLen);
  }
  return { rows: enc.rows, seqLen, ids, attentionMask, labels: enc.labels };
}

/** The calibration text as the round encodes text: what fixes the segment's clip norm. */
export function encodeCalibration(tokenizer: Tokenizer, r: Request): EncodedRows {
  const enc = tokenizer.encodeBatch(CALIBRATION_TEXTS, { maxLength: CALIBRATION_SEQ_LEN, padTokenId: r.padTokenId });
  return { ...enc, labels: new Int32Array(enc.rows) };
}
