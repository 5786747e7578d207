/**
 * A change to a step's gradients before the optimizer sees them, by variable name (the experiments' FedProx and
 * SCAFFOLD correct local steps so); tensors it makes are disposed after the step.
 */
export type GradientAdjustment = (params: tf.Variable[], grads: Record<string, tf.Tensor>) => Record<string, tf.Tensor>;

/**
 * The server's training step, for any family: hidden states a device computed at its cut go through the frozen
 * blocks up to the deepest cut of the run (forward only, no tape), then through the blocks that carry LoRA and the
 * head: the final norm and a classification head (task 'classification': one label per row), or the final norm and
 * the LM head over the whole vocabulary (task 'causal-lm': a label per token, the completion's next tokens).
 * Cross-entropy, backward down to the lowest adapter (nothing goes back to devices), AdamW.
 */
import * as tf from '@tensorflow/tfjs';
import { familyNames, familyOf, type Model } from '../../core/model/family.ts';
import { initClassificationHead } from '../../core/model/gpt2/init.ts';
import { SCORE } from '../../core/model/params.ts';
import type { AdapterWeights } from '../../core/peft/adapter.ts';
import type { DecodeOptions } from '../backends/decode.ts';
import type { Backend, Gradients, LossHead } from '../backends/backend.ts';
import { openBackend } from '../backends/open.ts';
import type { OpTime, OrtOptions } from '../backends/onnxruntime/types.ts';
import type { ServerNet } from '../backends/tfjs/net.ts';
import { AdamW } from './adamw.ts';
import { PendingStep, type StepResult } from './pending-step.ts';
import { LoraAdapters } from './lora.ts';
import { learningRate } from './schedule.ts';
import type { Task, TrainBatch, TrainSpec } from './batch.ts';

export type { Task, TrainBatch, TrainSpec } from './batch.ts';

export class Trainer {
  /** The TensorFlow.js net that holds the heads (and, on the TensorFlow.js backend, the blocks). */
  readonly net: ServerNet;
  readonly task: Task;
  readonly lora: LoraAdapters;
  /** The classification head [num_labels, d] (task 'classification' only). */
  readonly head: tf.Variable<tf.Rank.R2> | undefined;
  readonly opt: AdamW;
  readonly spec: TrainSpec;
  /** Blocks below this run on devices or forward-only; adapters start here. */
  readonly deepestCut: number;
  /** Where the blocks run (backends/backend.ts). */
  private readonly backend: Backend;
  /** Steps run one after another: each waits for the one before it. */
  private queue: Promise<unknown> = Promise.resolve();
  private queued = 0;

  /**
   * `firstBlock`: the lowest block the server holds. 0 (the default) lets it evaluate from tokens; a trainer that
   * only ever sees hidden states from cuts at or above k can hold blocks from k and save their memory. `blocks`: the
   * blocks run on onnxruntime (every one, over the checkpoint's arrays), and TensorFlow.js holds the heads only.
   */
  constructor(
    model: Model,
    spec: TrainSpec,
    deepestCut: number,
    { firstBlock = 0, task = 'classification', blocks }: { firstBlock?: number; task?: Task; blocks?: OrtOptions } = {},
  ) {
    const c = model.config;
    this.spec = spec;
    this.task = task;
    this.deepestCut = deepestCut;
    ({ backend: this.backend, heads: this.net } = openBackend(model, deepestCut, spec.lora, { firstBlock, blocks }));
    this.lora = new LoraAdapters(c, { ...spec.lora, from: deepestCut }, spec.seed);
    if (task === 'classification') {
      const head = model.params.get(SCORE) ?? initClassificationHead(c, spec.seed + 1);
      this.head = tf.variable(tf.tensor2d(head, [c.numLabels, c.nEmbd]), true);
    }
    this.opt = new AdamW(spec.optimizer);
  }

  /** Where the adapted blocks run, in words. */
  get blocksOn(): string {
    return this.backend.name;
  }

  variables(): tf.Variable[] {
    return this.head ? [...this.lora.variables(), this.head] : this.lora.variables();
  }

  private classifier(): tf.Variable<tf.Rank.R2> {
    if (!this.head) throw new Error(`a ${this.task} trainer has no classification head`);
    return this.head;
  }

  private logits(final: tf.Tensor3D, mask: tf.Tensor2D): tf.Tensor2D {
    return tf.matMul(this.net.pool(final, mask), this.classifier(), false, true);
  }

  /** The batch's mean loss on the final hidden states: over its rows' labels, or over its labelled tokens. */
  private loss(final: tf.Tensor3D, mask: tf.Tensor2D, labels: Int32Array): tf.Scalar {
    if (this.task === 'causal-lm') return this.net.lmLoss(final, labels);
    const onehot = tf.tidy(() => tf.oneHot(tf.tensor1d(labels, 'int32'), this.net.config.numLabels));
    return tf.losses.softmaxCrossEntropy(onehot, this.logits(final, mask)) as tf.Scalar;
  }

  private checkCut(b: TrainBatch): void {
    if (b.cut > this.deepestCut) throw new Error(`a batch cut at ${b.cut} is above the run's deepest cut ${this.deepestCut}`);
  }

  /** Mean cross-entropy of a batch and its gradients by variable name; the caller disposes them. */
  async lossAndGradients(b: TrainBatch, training: boolean): Promise<Gradients> {
    this.checkCut(b);
    const want = this.task === 'causal-lm' ? b.rows * b.seqLen : b.rows;
    if (b.labels.length !== want) throw new Error(`a ${this.task} batch of ${b.rows} x ${b.seqLen} needs ${want} labels, got ${b.labels.length}`);
    const mask = tf.tensor2d(b.mask, [b.rows, b.seqLen], 'int32');
    // Dropout masks are seeded by the step, so a run resumed from a checkpoint repeats them exactly.
    const adapters = this.lora.adapters(training, this.spec.seed * 7919 + this.opt.step);
    const head: LossHead = {
      loss: (final) => this.loss(final, mask, b.labels),
      ...(this.task === 'causal-lm' ? { labels: b.labels } : { lastTokens: true }),
    };
    try {
      return await this.backend.lossAndGradients(b, this.deepestCut, adapters, this.variables(), head);
    } finally {
      mask.dispose();
    }
  }

  /**
   * Queues one training step and returns at once: the step runs after the one before it, and its loss and gradient
   * norm (one 2-float readback) are read by `result()`, while the next step runs. Everything else (weights,
   * adapters, optimizer state) stays on the backend.
   */
  step(b: TrainBatch, adjust?: GradientAdjustment): PendingStep {
    // Checked now, so that a bad batch throws here rather than in the queue.
    this.checkCut(b);
    return this.queueStep(() => this.lossAndGradients(b, true), adjust);
  }

  /** One step on gradients computed elsewhere (the experiments' FedSGD averages its devices'); they are disposed. */
  applyGradients(g: Gradients): Promise<StepResult> {
    return this.queueStep(() => Promise.resolve(g)).result();
  }

  private queueStep(gradients: () => Promise<Gradients>, adjust?: GradientAdjustment): PendingStep {
    const lr = learningRate(this.spec.schedule, this.opt.step + this.queued);
    const apply = ({ loss, grads }: Gradients) => {
      const used = adjust ? tf.tidy(() => adjust(this.variables(), grads)) : grads;
      const { norm, applied } = this.opt.apply(this.variables(), used, lr, loss);
      const stats = tf.stack([loss, norm, applied]) as tf.Tensor1D;
      tf.dispose([loss, norm, applied, ...Object.values(grads), ...(adjust ? Object.values(used) : [])]);
      return stats;
    };
    this.queued++;
    const stats = this.queue
      .then(gradients)
      .then(apply)
      .finally(() => this.queued--);
    this.queue = stats.catch(() => undefined);
    return new PendingStep(stats, lr);
  }

  /** One training step, waiting for it. */
  trainStep(b: TrainBatch, adjust?: GradientAdjustment): Promise<StepResult> {
    return this.step(b, adjust).result();
  }

  /** Final hidden states [rows, seqLen, d] of a batch at any cut, adapters applied, no dropout. */
  private final(b: TrainBatch): Promise<Float32Array> {
    this.checkCut(b);
    return this.backend.forward(b, undefined, this.lora.adapters(false));
  }

  /** Token ids as a batch at cut 0 (their embeddings): the server runs the device blocks itself on held-out text. */
  private async embedded(ids: Int32Array, mask: Int32Array, rows: number, seqLen: number, labels: Int32Array = new Int32Array(0)): Promise<TrainBatch> {
    return { cut: 0, rows, seqLen, hidden: await this.backend.embed(ids, mask, rows, seqLen), mask, labels };
  }

  /** Hidden states [rows, seqLen, d] of token ids at `cut`, through the frozen blocks below it: what a device uploads. */
  async hiddenAt(ids: Int32Array, mask: Int32Array, rows: number, seqLen: number, cut: number): Promise<Float32Array> {
    const b = await this.embedded(ids, mask, rows, seqLen);
    return cut === 0 ? b.hidden : this.backend.forward(b, cut);
  }

  /** The mean loss of a batch at any cut, adapters applied, no dropout (held-out loss of causal-lm runs). */
  async evalLoss(b: TrainBatch): Promise<number> {
    const final = await this.final(b);
    if (this.task === 'causal-lm' && this.backend.lmLoss) return this.backend.lmLoss(final, b.labels);
    return tf.tidy(
      () => this.loss(tf.tensor3d(final, [b.rows, b.seqLen, this.net.config.nEmbd]), tf.tensor2d(b.mask, [b.rows, b.seqLen], 'int32'), b.labels).dataSync()[0]!,
    );
  }

  /** The mean loss of token ids through the whole model (held-out completions): labels as in a causal-lm batch. */
  async tokenLoss(ids: Int32Array, attentionMask: Int32Array, labels: Int32Array, rows: number, seqLen: number): Promise<number> {
    return this.evalLoss(await this.embedded(ids, attentionMask, rows, seqLen, labels));
  }

  /** Continues a prompt (token ids) with the adapters applied: the base model plus what training learnt. */
  async generate(prompt: readonly number[], options: DecodeOptions): Promise<number[]> {
    const c = this.net.config;
    const family = familyOf(c);
    if (!family.generation) throw new Error(`generation runs on ${familyNames((f) => f.generation)} models; this is ${family.name}`);
    return this.backend.generate(prompt, { ...options, stop: options.stop ?? family.stopTokens(c) }, this.lora.adapters(false));
  }

  /** Classification logits [rows, classes] of a batch at any cut, adapters applied, no dropout. */
  async predict(b: TrainBatch): Promise<Float32Array> {
    const final = await this.final(b);
    return tf.tidy(
      () =>
        this.logits(tf.tensor3d(final, [b.rows, b.seqLen, this.net.config.nEmbd]), tf.tensor2d(b.mask, [b.rows, b.seqLen], 'int32')).dataSync() as Float32Array,
    );
  }

  /** Token ids through the whole model (the server holds it all): evaluation on the operator's held-out text. */
  async predictTokens(ids: Int32Array, attentionMask: Int32Array, rows: number, seqLen: number): Promise<Float32Array> {
    return this.predict(await this.embedded(ids, attentionMask, rows, seqLen));
  }

  /** Where the adapted blocks' time went on onnxruntime (a trainer made with blocks: { profile: true }). */
  onnxruntimeProfile(over?: { steps: number; warmUp: number }): Promise<OpTime[]> {
    if (!this.backend.profile) throw new Error(`the adapted blocks run on ${this.blocksOn}, not onnxruntime`);
    return this.backend.profile(over);
  }

  exportAdapter(): AdapterWeights {
    return { ...this.lora.weights(), head: this.head?.dataSync() as Float32Array | undefined };
  }

  /** The adapters' values as one flat vector (GraB balances differences of these). */
  flatAdapters(): Float32Array {
    return this.lora.flat();
  }

  /** Forgets AdamW's moments and step: a device starting local training from the global adapters. */
  resetOptimizer(): void {
    this.opt.dispose();
    this.opt.m.clear();
    this.opt.v.clear();
    this.opt.step = 0;
  }

  loadAdapter(w: AdapterWeights): void {
    this.lora.load(w);
    if (w.head) this.classifier().assign(tf.tensor2d(w.head, this.classifier().shape));
  }

  dispose(): void {
    this.backend.dispose();
    this.net.dispose();
    this.lora.dispose();
    this.head?.dispose();
    this.opt.dispose();
  }
}
