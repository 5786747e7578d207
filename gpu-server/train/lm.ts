/** The causal language-modelling loss: mean cross-entropy of each next token whose mask is 1. */
import * as tf from '@tensorflow/tfjs';
import type { TrainableGPT2 } from '../backends/tfjs/gpt2-trainable.ts';

export function lmLoss(net: TrainableGPT2, ids: tf.Tensor2D, mask: tf.Tensor2D): tf.Scalar {
  const [B, T] = ids.shape;
  const d = net.config.nEmbd;
  const hidden = net
    .hidden(ids, mask)
    .slice([0, 0, 0], [B, T - 1, d])
    .reshape([B * (T - 1), d]) as tf.Tensor2D;
  const logits = net.lmLogits(hidden);
  const targets = ids.slice([0, 1], [B, T - 1]).reshape([-1]) as tf.Tensor1D;
  const weights = tf.cast(mask.slice([0, 1], [B, T - 1]).reshape([-1]), 'float32');
  const nll = tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), tf.oneHot(targets, net.config.vocabSize)), 1));
  return tf.div(tf.sum(tf.mul(nll, weights)), tf.maximum(tf.sum(weights), 1)) as tf.Scalar;
}
