/** Llama's rotary position embeddings and grouped-query key/value heads in TensorFlow.js (TfLlama's). */
import * as tf from '@tensorflow/tfjs';

/** Rotary cos and sin for each row of a forward, [rows, 1, head_dim]. */
export interface Rotary {
  cos: tf.Tensor3D;
  sin: tf.Tensor3D;
}

/** Positions [B, n] (consumed) -> rotary cos/sin per row, from the inverse frequencies [1, head_dim / 2]. */
export function rotaryTables(invFreq: tf.Tensor2D, positions: tf.Tensor2D): Rotary {
  return tf.tidy(() => {
    const freqs = tf.matMul(tf.cast(positions.reshape([-1, 1]), 'float32'), invFreq);
    positions.dispose();
    const angles = tf.expandDims<tf.Tensor3D>(tf.concat([freqs, freqs], 1), 1);
    return { cos: tf.cos(angles), sin: tf.sin(angles) };
  });
}

/** Rows [R, heads, hd] rotated as HF's rotate_half: pairs (i, i + hd/2). */
export function rotate(t: tf.Tensor3D, { cos, sin }: Rotary): tf.Tensor3D {
  const half = t.shape[2] / 2;
  const [first, second] = tf.split(t, [half, half], 2);
  return tf.add(tf.mul(t, cos), tf.mul(tf.concat([tf.neg(second!), first!], 2), sin));
}

/** [B, KV, K, hd] -> [B, H, K, hd]: each key/value head repeated for the query heads that share it (rank-3 Tile: TF.js has its gradient). */
export function repeatKv(t: tf.Tensor4D, nHead: number): tf.Tensor4D {
  const [B, KV, K, hd] = t.shape;
  const rep = nHead / KV;
  return rep === 1 ? t : (tf.tile(t.reshape([B * KV, 1, K * hd]), [1, rep, 1]).reshape([B, KV * rep, K, hd]) as tf.Tensor4D);
}
