/** Weight-only int8 quantization: symmetric, one scale per output column (or per row of an embedding table). */

export interface Int8Matrix {
  /** Quantized values, same layout as the float matrix. */
  values: Int8Array;
  /** One scale per group: value = int8 * scale. */
  scales: Float32Array;
}

/** Quantizes a row-major [rows, cols] matrix with one scale per column (`perColumn`) or per row. */
export function quantizeInt8(m: Float32Array, rows: number, cols: number, per: 'column' | 'row'): Int8Matrix {
  const groups = per === 'column' ? cols : rows;
  const at = per === 'column' ? (g: number, k: number) => k * cols + g : (g: number, k: number) => g * cols + k;
  const length = per === 'column' ? rows : cols;
  const values = new Int8Array(m.length);
  const scales = new Float32Array(groups);
  for (let g = 0; g < groups; g++) {
    let max = 0;
    for (let k = 0; k < length; k++) max = Math.max(max, Math.abs(m[at(g, k)]));
    const scale = max > 0 ? max / 127 : 1;
    scales[g] = scale;
    for (let k = 0; k < length; k++) values[at(g, k)] = Math.max(-127, Math.min(127, Math.round(m[at(g, k)] / scale)));
  }
  return { values, scales };
}
