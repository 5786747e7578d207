/**
 * Where the server's blocks run, behind one interface (as onnxruntime's execution providers sit behind one session
 * API): the frozen blocks' forward, the adapted blocks' forward and backward, inference and generation. The trainer
 * (gpu-server/train/trainer.ts) holds one Backend and never asks which. The heads (classification head, LM loss) and
 * the LoRA variables are TensorFlow.js tensors in every backend: AdamW updates them in one place.
 *
 * Each backend is a folder: tfjs/ (TensorFlow.js, any of its own backends) and onnxruntime/ (ONNX graphs on
 * onnxruntime-node, CPU or WebGPU). open.ts picks one.
 */
import type * as tf from '@tensorflow/tfjs';
import type { DecodeOptions } from './decode.ts';
import type { OpTime } from './onnxruntime/types.ts';
import type { Adapters } from './tfjs/ops.ts';

/** Hidden states [rows, seqLen, d] at block `cut` (0: token embeddings), with their attention mask [rows, seqLen]. */
export interface HiddenBatch {
  cut: number;
  rows: number;
  seqLen: number;
  hidden: Float32Array;
  mask: Int32Array;
}

/** What a training step ends in: the heads' loss (TensorFlow.js), and what of the final hidden states it reads. */
export interface LossHead {
  loss(final: tf.Tensor3D): tf.Scalar;
  /** Token labels [rows * seqLen] of a causal-LM batch: a backend with its own LM head computes loss and gradient itself. */
  labels?: Int32Array;
  /** The head reads each row's last real token only (a classification head): a backend may run the last block on those rows alone. */
  lastTokens?: boolean;
}

export interface Gradients {
  loss: tf.Scalar;
  grads: Record<string, tf.Tensor>;
}

export interface Backend {
  /** Where the blocks run, in words: 'TensorFlow.js', 'onnxruntime (cpu)'. */
  readonly name: string;
  /** Token ids [rows, seqLen] as the first block's input. */
  embed(ids: Int32Array, mask: Int32Array, rows: number, seqLen: number): Promise<Float32Array>;
  /** Blocks [b.cut, to) forward only (to: every block), with `adapters` (no dropout) on the blocks that have them. */
  forward(b: HiddenBatch, to?: number, adapters?: Adapters): Promise<Float32Array>;
  /**
   * The loss of a batch and the gradients of `variables`: blocks [b.cut, from) forward only, blocks [from, n) with
   * `adapters` (dropout included), then `head`. The caller disposes the tensors.
   */
  lossAndGradients(b: HiddenBatch, from: number, adapters: Adapters, variables: tf.Variable[], head: LossHead): Promise<Gradients>;
  /** The mean LM loss of final hidden states, where the backend holds the LM head itself (else the caller's head computes it). */
  lmLoss?(final: Float32Array, labels: Int32Array): Promise<number>;
  /** Continues a prompt with `adapters` (no dropout), stopping at `options.stop`. */
  generate(prompt: readonly number[], options: DecodeOptions & { stop: readonly number[] }, adapters: Adapters): Promise<number[]>;
  /** Where the adapted blocks' time went, by operator, where the backend can tell. */
  profile?(over?: { steps: number; warmUp: number }): Promise<OpTime[]>;
  dispose(): void;
}
