/** A family's final norm and LM head on onnxruntime (Llama's): logits, and the causal-LM loss and its gradient, in chunks of rows. */
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { labelledPositions } from '../tfjs/ops.ts';
import { scoreLogits } from '../../train/score.ts';
import type { BlockFamily } from './families.ts';
import type { GraphSessions } from './sessions.ts';

/**
 * Logits one run of the LM head holds by default: 128 MiB, 261 rows at Llama 3's 128,256-token vocabulary. Each run
 * streams the whole head (1 GB at Llama-3.2-1B) through two products, so the fewer the runs the better: at 32 rows a
 * run Llama-3.2-1B's head took 1.7x as long for a batch of 2 x 128 as in one run of 256 rows.
 */
const LM_HEAD_LOGITS_BYTES = 128 * 2 ** 20;

const f32 = (data: Float32Array, dims: number[]): ort.Tensor => new ort.Tensor('float32', data, dims);

export class OrtLmHead {
  /** Rows of the LM head per run. */
  private readonly rowsPerRun: number;

  constructor(
    private readonly graphs: GraphSessions,
    private readonly family: BlockFamily,
    private readonly vocabSize: number,
    logitsBytes = LM_HEAD_LOGITS_BYTES,
  ) {
    this.rowsPerRun = Math.max(1, Math.floor(logitsBytes / (4 * vocabSize)));
  }

  /** Next-token logits [M, V] of final hidden states [M, d] (the final norm and the LM head). */
  async logits(rows: Float32Array): Promise<Float32Array> {
    const session = await this.graphs.session('lm-logits');
    const d = this.family.nEmbd;
    const out = await session.run(this.graphs.feeds(session, { rows: f32(rows, [rows.length / d, d]), ...this.family.lmHead!.weights }));
    return out.logits!.data as Float32Array;
  }

  /** The mean next-token loss of the labelled rows of final hidden states y [B*T, d], rowsPerRun rows of logits at a time. */
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
   * The labelled positions of y [B*T, d] (labelledPositions: at least one) in chunks of rowsPerRun, each with its
   * rows of y gathered [chunk, d] and the count of all labelled positions, for `f` one after the other. Returns that
   * count.
   */
  private async labelledChunks(y: Float32Array, labels: Int32Array, f: (chunk: number[], rows: Float32Array, total: number) => Promise<void>): Promise<number> {
    const d = this.family.nEmbd;
    const picked = labelledPositions(labels);
    for (let at = 0; at < picked.length; at += this.rowsPerRun) {
      const chunk = picked.slice(at, at + this.rowsPerRun);
      const rows = new Float32Array(chunk.length * d);
      chunk.forEach((r, i) => rows.set(y.subarray(r * d, (r + 1) * d), i * d));
      await f(chunk, rows, picked.length);
    }
    return picked.length;
  }

  /**
   * The mean next-token loss of the labelled rows of y [B*T, d] and y's gradient, on the LM head graph, rowsPerRun
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
