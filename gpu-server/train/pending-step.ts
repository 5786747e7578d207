/** A training step as the trainer issues it: its loss and gradient norm, read once, when the caller wants them. */
import * as tf from '@tensorflow/tfjs';

export interface StepResult {
  loss: number;
  gradNorm: number;
  lr: number;
  /** False when the step was not applied: its loss, gradient or update was not finite (adamw.ts). */
  applied: boolean;
}

/** A training step queued on the trainer, read once. */
export class PendingStep {
  private read: Promise<StepResult> | undefined;

  constructor(
    private readonly stats: Promise<tf.Tensor1D>,
    readonly lr: number,
  ) {}

  result(): Promise<StepResult> {
    return (this.read ??= this.stats.then(async (s) => this.done(s, await s.data())));
  }

  private done(stats: tf.Tensor1D, values: ArrayLike<number>): StepResult {
    stats.dispose();
    return { loss: values[0]!, gradNorm: values[1]!, lr: this.lr, applied: values[2] === 1 };
  }
}
