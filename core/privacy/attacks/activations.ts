/** What a curious server receives from a device, and the model it holds: the inputs of every attack. */

/** A batch as uploaded: hidden states [rows, seq, d] and the attention mask [rows, seq]. */
export interface Activations {
  hidden: Float32Array;
  mask: ArrayLike<number>;
  rows: number;
  seq: number;
  d: number;
}

/** The frozen prefix, which the server holds: token ids and mask [rows, seq] to hidden states [rows, seq, d]. */
export type PrefixRun = (ids: Int32Array, mask: Int32Array, rows: number, seq: number) => Promise<Float32Array>;

/** Real positions of row r of a right-padded mask [rows, seq]: they come first. */
export function rowLength(mask: ArrayLike<number>, r: number, seq: number): number {
  let n = 0;
  while (n < seq && mask[r * seq + n]) n++;
  return n;
}
