/**
 * The TensorFlow.js backend: the blocks as TF.js models (TfGPT2, TfLlama) on whichever TF.js backend started
 * (runtime.ts: wasm, webgpu, tfjs-node, cpu). Training differentiates the adapted blocks by hand (GPT-2) or with
 * per-block checkpointing (Llama); the net also holds the heads, which the trainer uses in every backend.
 */
import * as tf from '@tensorflow/tfjs';
import type { DecodeOptions } from '../decode.ts';
import type { Backend, Gradients, HiddenBatch, LossHead } from '../backend.ts';
import type { ServerNet } from './net.ts';
import type { Adapters } from './ops.ts';

export class TfjsBackend implements Backend {
  readonly name = 'TensorFlow.js';

  /** `net` holds the blocks (the trainer owns it, for its heads too, and disposes it). */
  constructor(private readonly net: ServerNet) {}

  private tensors(b: HiddenBatch): { hidden: tf.Tensor3D; mask: tf.Tensor2D } {
    return { hidden: tf.tensor3d(b.hidden, [b.rows, b.seqLen, this.net.config.nEmbd]), mask: tf.tensor2d(b.mask, [b.rows, b.seqLen], 'int32') };
  }

  async embed(ids: Int32Array, mask: Int32Array, rows: number, seqLen: number): Promise<Float32Array> {
    return tf.tidy(() => this.net.hidden(tf.tensor2d(ids, [rows, seqLen], 'int32'), tf.tensor2d(mask, [rows, seqLen], 'int32'), 0).dataSync() as Float32Array);
  }

  async forward(b: HiddenBatch, to?: number, adapters?: Adapters): Promise<Float32Array> {
    return tf.tidy(() => {
      const { hidden, mask } = this.tensors(b);
      return this.net.blocksForward(hidden, mask, b.cut, to, adapters).dataSync() as Float32Array;
    });
  }

  async lossAndGradients(b: HiddenBatch, from: number, adapters: Adapters, variables: tf.Variable[], head: LossHead): Promise<Gradients> {
    const { hidden, mask } = this.tensors(b);
    // Frozen blocks without a tape.
    const atCut = b.cut === from ? hidden : tf.tidy(() => this.net.blocksForward(hidden, mask, b.cut, from));
    try {
      return this.net.lossAndGradients(atCut, mask, from, adapters, variables, head.loss);
    } finally {
      tf.dispose([hidden, mask, atCut]);
    }
  }

  generate(prompt: readonly number[], options: DecodeOptions & { stop: readonly number[] }, adapters: Adapters): Promise<number[]> {
    if (!('generate' in this.net)) throw new Error(`the TensorFlow.js ${this.net.config.modelType} model does not generate`);
    return this.net.generate(prompt, { ...options, adapters });
  }

  dispose(): void {}
}
