/**
 * Padding conventions shared by every implementation (reference, TF.js, ONNX):
 * - position ids count only real tokens: pos = max(cumsum(mask) - 1, 0), so a left-padded sequence gets the same
 *   positions as the right-padded one (for right padding this equals Hugging Face's default arange);
 * - a query attends to keys j <= i whose mask is 1; a score it may not see is replaced by MASKED_SCORE (not added to),
 *   so a padding row with nothing to see attends uniformly and stays finite;
 * - the classification head reads the last token whose mask is 1.
 */
export const MASKED_SCORE = -1e9;

export function positionIds(mask: ArrayLike<number>, batch: number, seq: number): Int32Array {
  const pos = new Int32Array(batch * seq);
  for (let b = 0; b < batch; b++) {
    let count = 0;
    for (let t = 0; t < seq; t++) {
      count += mask[b * seq + t] ? 1 : 0;
      pos[b * seq + t] = Math.max(count - 1, 0);
    }
  }
  return pos;
}

/** Index of each row's last real token; a row with no real token pools its last position. */
export function lastTokenIndex(mask: ArrayLike<number>, batch: number, seq: number): Int32Array {
  const idx = new Int32Array(batch).fill(seq - 1);
  for (let b = 0; b < batch; b++) {
    for (let t = seq - 1; t >= 0; t--) {
      if (mask[b * seq + t]) {
        idx[b] = t;
        break;
      }
    }
  }
  return idx;
}
