/**
 * How a device encodes its rows for a round: the token ids, mask and labels its prefix runs on. Kept apart from the
 * prefix (forward.ts) so that what the server's request can change of a row is plain to read and test.
 */
import { encodeGenerationBatch, IGNORE_INDEX, type GenerationExample } from '../../../core/data/generation.ts';
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
 * Rows as the round encodes them: each whole, then cut at the round's seqLen from the right. What comes before a
 * position, and so its hidden state and the seed of its noise, never depends on the request: a server that asks for
 * the same rows at other lengths gets copies equal wherever they overlap, never fresh noise on the same tokens (cutting
 * a pair's longer text first, or keeping a long prompt's end, would start later tokens elsewhere at each length).
 */
export function encodeRows(tokenizer: Tokenizer, rows: readonly Row[], r: Request): EncodedRows {
  if (r.task === 'generation') return cutRows(encodeGenerationBatch(tokenizer, rows as GenerationExample[], WHOLE, r.padTokenId), r.seqLen, r.padTokenId);
  const enc = tokenizer.encodeBatch((rows as Example[]).map(textInput), { maxLength: WHOLE, padTokenId: r.padTokenId });
  return cutRows({ ...enc, labels: Int32Array.from(rows as Example[], (row) => row.label) }, r.seqLen, r.padTokenId);
}

/** A length no row reaches: rows are encoded whole. */
const WHOLE = Number.MAX_SAFE_INTEGER;

/**
 * Right-padded rows [rows, seq] cut to their first `seqLen` positions. Per-position labels (generation) are cut too,
 * and a cut row's last label, the token after the cut, is dropped: the row no longer holds it.
 */
function cutRows(enc: EncodedRows, seqLen: number, padTokenId: number): EncodedRows {
  if (enc.seqLen <= seqLen) return enc;
  const perPosition = enc.labels.length === enc.rows * enc.seqLen;
  const ids = new Int32Array(enc.rows * seqLen).fill(padTokenId);
  const attentionMask = new Int32Array(enc.rows * seqLen);
  const labels = perPosition ? new Int32Array(enc.rows * seqLen) : enc.labels;
  for (let r = 0; r < enc.rows; r++) {
    const from = r * enc.seqLen;
    ids.set(enc.ids.subarray(from, from + seqLen), r * seqLen);
    attentionMask.set(enc.attentionMask.subarray(from, from + seqLen), r * seqLen);
    if (!perPosition) continue;
    labels.set(enc.labels.subarray(from, from + seqLen), r * seqLen);
    if (enc.attentionMask[from + seqLen]) labels[r * seqLen + seqLen - 1] = IGNORE_INDEX;
  }
  return { rows: enc.rows, seqLen, ids, attentionMask, labels };
}

/** The calibration text as the round encodes text: what fixes the segment's clip norm. */
export function encodeCalibration(tokenizer: Tokenizer, r: Request): EncodedRows {
  const enc = tokenizer.encodeBatch(CALIBRATION_TEXTS, { maxLength: CALIBRATION_SEQ_LEN, padTokenId: r.padTokenId });
  return { ...enc, labels: new Int32Array(enc.rows) };
}
