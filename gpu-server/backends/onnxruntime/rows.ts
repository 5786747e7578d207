/** Rows of flat row-major arrays, by index: a pooled block's rows among a batch's. */

/** Rows `rows` of a [N, n] array, as [rows.length, n]. */
export function gatherRows(a: Float32Array, rows: Int32Array, n: number): Float32Array {
  const out = new Float32Array(rows.length * n);
  rows.forEach((r, i) => out.set(a.subarray(r * n, (r + 1) * n), i * n));
  return out;
}

/** [rows.length, n] as rows `rows` of a [N, n] array of zeros. */
export function scatterRows(a: Float32Array, rows: Int32Array, N: number, n: number): Float32Array {
  const out = new Float32Array(N * n);
  rows.forEach((r, i) => out.set(a.subarray(i * n, (i + 1) * n), r * n));
  return out;
}
