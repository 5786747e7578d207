/**
 * The onnxruntime backend: every block of the model as ONNX graphs on onnxruntime-node (OrtBlocks), CPU or WebGPU.
 * A batch stays in native memory from the device's hidden states to the final states and back down to the adapters'
 * gradients; only the heads' loss and its gradient cross to TensorFlow.js (or not even that, with the family's own LM
 * head graph).
 */
import type * as tf from '@tensorflow/tfjs';
import type { Model } from '../../../core/model/family.ts';
import type { DecodeOptions } from '../decode.ts';
import type { Backend, Gradients, HiddenBatch, LossHead } from '../backend.ts';
import type { Adapters } from '../tfjs/ops.ts';
import { OrtBlocks, type OrtOptions } from './blocks.ts';
import type { LoraGraphSpec } from '../../../core/onnx/lora-graph.ts';

export class OrtBackend implements Backend {
  readonly name: string;
  private readonly blocks: OrtBlocks;
  readonly lmLoss?: (final: Float32Array, labels: Int32Array) => Promise<number>;

  private readonly maxPositions: number;

  /** `from`: the lowest adapted block (the run's deepest cut). */
  constructor(model: Model, from: number, lora: LoraGraphSpec, options: OrtOptions) {
    this.blocks = new OrtBlocks(model, from, lora, options);
    this.maxPositions = model.config.nPositions;
    this.name = `onnxruntime (${options.provider})`;
    if (this.blocks.hasLmHead) this.lmLoss = (final, labels) => this.blocks.lmEvalLoss(final, labels);
  }

  async embed(ids: Int32Array, mask: Int32Array, rows: number, seqLen: number): Promise<Float32Array> {
    return this.blocks.embed(ids, mask, rows, seqLen);
  }

  async forward(b: HiddenBatch, to?: number, adapters?: Adapters): Promise<Float32Array> {
    const arrays = adapters && this.blocks.adapterArrays(adapters, b.rows * b.seqLen);
    return (await this.blocks.infer(b.hidden, b.mask, [b.rows, b.seqLen], { from: b.cut, to, adapters: arrays })).y;
  }

  async lossAndGradients(b: HiddenBatch, from: number, adapters: Adapters, variables: tf.Variable[], head: LossHead): Promise<Gradients> {
    const atCut = b.cut < from ? await this.forward(b, from) : b.hidden;
    return this.blocks.lossAndGradients(atCut, b.mask, [b.rows, b.seqLen], adapters, variables, head);
  }

  generate(prompt: readonly number[], options: DecodeOptions & { stop: readonly number[] }, adapters: Adapters): Promise<number[]> {
    return this.blocks.generate(prompt, options, this.blocks.adapterArrays(adapters, 1), this.maxPositions);
  }

  profile(over?: { steps: number; warmUp: number }) {
    return this.blocks.profile(over);
  }

  dispose(): void {
    void this.blocks.release();
  }
}
