/** A family's final norm and LM head on onnxruntime (Llama's): logits, and the causal-LM loss and its gradient, in chunks of rows. */
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { labelledPositions } from '../tfjs/ops.ts';
import { scoreLogits } from '../../train/score.ts';
import type { BlockFamily } from './families.ts';
import type { GraphSessions } from './sessions.ts';

/** Rows of the LM head per run: 32 x 128,256 logits (16 MB) at Llama-3's vocabulary, never a batch's all at once. */
const LM_HEAD_ROWS = 32;

const f32 = (data: Float32Array, dims: number[]): ort.Tensor => new ort.Tensor('float32', data, dims);

export class OrtLmHead {
  constructor(
    private readonly graphs: GraphSessions,
    private readonly family: BlockFamily,
    private readonly vocabSize: number,
  ) {}

  /** Next-token logits [M, V] of final hidden states [M, d] (the final norm and the LM head). */
  async logits(rows: Float32Array): Promise<Float32Array> {
    const session = await this.graphs.session('lm-logits');
    const d = this.family.nEmbd;
    const out = await session.run(this.graphs.feeds(session, { rows: f32(rows, [rows.length / d, d]), ...this.family.lmHead!.weights }));
    return out.logits!.data as Float32Array;
  }

  /** The mean next-token loss of the labelled rows of final hidden states y [B*T, d], LM_HEAD_ROWS rows of logits at a time. */
  async evalLoss(y: Float32Array, labels: Int32Array): Promise<number> {
    let sum = 0;
    const count = await this.labelledChunks(y, labels, async (chunk, rows) => {
      sum +=
        scoreLogits(
          await this.logits(rows),
          chunk.map((r) => labels[r]!),
          this.vocabSize,
        ).loss * chunk.length;
    });
    return sum / count;
  }

  /**
   * The labelled positions of y [B*T, d] (labelledPositions: at least one) in chunks of LM_HEAD_ROWS, each with its
   * rows of y gathered [chunk, d] and the count of all labelled positions, for `f` one after the other. Returns that
   * count.
   */
  private async labelledChunks(y: Float32Array, labels: Int32Array, f: (chunk: number[], rows: Float32Array, total: number) => Promise<void>): Promise<number> {
    const d = this.family.nEmbd;
    const picked = labelledPositions(labels);
    for (let at = 0; at < picked.length; at += LM_HEAD_ROWS) {
      const chunk = picked.slice(at, at + LM_HEAD_ROWS);
      const rows = new Float32Array(chunk.length * d);
      chunk.forEach((r, i) => rows.set(y.subarray(r * d, (r + 1) * d), i * d));
      await f(chunk, rows, picked.length);
    }
    return picked.length;
  }

  /**
   * The mean next-token loss of the labelled rows of y [B*T, d] and y's gradient, on the LM head graph, LM_HEAD_ROWS
   * rows per run.
   */
  async loss(y: Float32Array, labels: Int32Array, d: number): Promise<{ loss: tf.Scalar; dFinal: Float32Array }> {
    const session = await this.graphs.session('lm-loss');
    const dFinal = new Float32Array(y.length);
    let sum = 0;
    const count = await this.labelledChunks(y, labels, async (chunk, rows, total) => {
      const targets = new ort.Tensor(
        'int64',
        BigInt64Array.from(chunk, (r) => BigInt(labels[r]!)),
        [chunk.length],
      );
      const out = await session.run(this.graphs.feeds(session, { rows: f32(rows, [chunk.length, d]), targets, ...this.family.lmHead!.weights }));
      sum += (out.loss!.data as Float32Array)[0]!;
      // The graph's loss is a sum over its rows: the mean's gradient is 1 / M of it.
      const dRows = out.drows!.data as Float32Array;
      chunk.forEach((r, i) => {
        for (let j = 0; j < d; j++) dFinal[r * d + j] = dRows[i * d + j]! / total;
      });
    });
    return { loss: tf.scalar(sum / count), dFinal };
  }
}
