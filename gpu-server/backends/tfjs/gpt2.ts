/**
 * GPT-2 in TensorFlow.js for the training server, every weight frozen: the full model, or any suffix (blocks [k, n) +
 * head) applied to hidden states that devices computed at cut k, with LoRA adapters on its linears. Padding
 * conventions: core/model/masking.ts; the block math it shares with the pretraining model (gpt2-trainable.ts):
 * gpt2-block.ts.
 *
 * Training the adapters goes through trainForward, whose blocks each have a hand-written backward (blockBackward):
 * autodiff would keep every intermediate tensor of every block and every intermediate gradient until the backward
 * pass ends (GPT-2 small: ~300 MB per block at batch 8 x 128, past WebAssembly's 4 GB at 10 blocks); the written
 * backward keeps a handful per block (BlockTape). Inference runs the same block through autodiff's ops.
 */
import * as tf from '@tensorflow/tfjs';
import { BLOCK_LINEARS, param, SCORE, type GPT2Model } from '../../../core/model/gpt2/weights.ts';
import type { GPT2Config } from '../../../core/model/gpt2/config.ts';
import {
  blockAt,
  blockBackward,
  blocksForward,
  disposeWeights,
  embed,
  layerNorm,
  savedTape,
  tapedBlockForward,
  tapeTensors,
  uploadWeights,
  type GPT2Weights,
} from './gpt2-block.ts';
import { attentionMask, chunkedLmLoss, FrozenLinear, labelledRows, lastTokens, type Adapters } from './ops.ts';

export class TfGPT2 {
  readonly config: GPT2Config;
  private readonly model: GPT2Model;
  private readonly weights: GPT2Weights<FrozenLinear>;
  private readonly score: FrozenLinear | undefined;
  /** Uploaded on first use: a suffix that starts at a cut and classifies never needs the vocabulary table. */
  private embeddings: { wte: tf.Tensor2D; wpe: tf.Tensor2D } | undefined;
  private lmHead: FrozenLinear | undefined;

  /** Uploads the parameters of blocks [firstBlock, n) and the head; blocks below firstBlock run on the devices. */
  constructor(model: GPT2Model, { firstBlock = 0 }: { firstBlock?: number } = {}) {
    this.model = model;
    const c = (this.config = model.config);
    this.weights = uploadWeights(
      model,
      firstBlock,
      (t) => t,
      (weight, bias) => new FrozenLinear(weight, bias),
    );
    const score = model.params.get(SCORE);
    if (score) {
      const scoreT = tf.tensor2d(score, [c.numLabels, c.nEmbd]); // nn.Linear layout [out, in]
      this.score = new FrozenLinear(scoreT.transpose(), undefined, scoreT);
    }
  }

  private embeddingTables() {
    const c = this.config;
    // Kept: the first use may be inside a tf.tidy.
    const table = (name: string, rows: number) => tf.keep(tf.tensor2d(param(this.model, name), [rows, c.nEmbd]));
    return (this.embeddings ??= { wte: table('wte.weight', c.vocabSize), wpe: table('wpe.weight', c.nPositions) });
  }

  /** Token + position embeddings: ids and mask [B, T] int32 -> [B, T, d]. */
  embed(ids: tf.Tensor2D, mask: tf.Tensor2D): tf.Tensor3D {
    const { wte, wpe } = this.embeddingTables();
    return embed(this.config, wte, wpe, ids, mask, (t, i) => tf.gather(t, i));
  }

  /** The tied LM head, wte^T, transposed once on first use. */
  private tiedHead(): FrozenLinear {
    const { wte } = this.embeddingTables();
    return (this.lmHead ??= new FrozenLinear(wte.transpose(), undefined, wte.clone()));
  }

  /** Runs blocks [from, to) on hidden states [B, T, d], with adapters if given. Use inside tf.tidy or a gradient function. */
  blocksForward(hidden: tf.Tensor3D, mask: tf.Tensor2D, from: number, to = this.config.nLayer, adapters?: Adapters): tf.Tensor3D {
    return blocksForward(this.weights, hidden, mask, from, to, adapters);
  }

  /**
   * Blocks [from, n) for training their adapters: the same computation as blocksForward, as one differentiable step
   * per block whose backward is blockBackward. Gradients reach the adapters' A and B tensors, and the hidden states
   * only with `inputGradient` (otherwise theirs is zero and the backward pass stops at the lowest adapter, as
   * autodiff's would); call inside tf.variableGrads or tf.grads.
   */
  trainForward(hidden: tf.Tensor3D, mask: tf.Tensor2D, from: number, adapters: Adapters, { inputGradient = false } = {}): tf.Tensor3D {
    const c = this.config;
    const [B, T, d] = hidden.shape;
    const shape = { config: c, B, T };
    const attn = attentionMask(mask, c.nHead, d / c.nHead);
    let x = hidden.reshape([B * T, d]) as tf.Tensor2D;
    for (let i = from; i < c.nLayer; i++) {
      const ads = adapters(i, B * T);
      const adapted = BLOCK_LINEARS.filter((name) => ads[name]);
      const step = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
        const save = args.at(-1) as tf.GradSaveFunc;
        const block = blockAt(this.weights, i);
        const { y, tape } = tapedBlockForward(block, args[0] as tf.Tensor2D, shape, attn, ads);
        // Saved, with the mask and dropout multipliers: the backward pass runs after this loop has let them go.
        save(tapeTensors(tape));
        return {
          value: y,
          gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
            tf.tidy(() => {
              const { dx, grads } = blockBackward(block, dy as tf.Tensor2D, savedTape(tape, saved), shape, ads, inputGradient || i > from);
              return [dx ?? tf.zerosLike(dy), ...adapted.flatMap((name) => grads.get(name)!)];
            }),
        };
      });
      x = step(x, ...adapted.flatMap((name) => [ads[name]!.a, ads[name]!.b])) as tf.Tensor2D;
    }
    tf.dispose([attn.scale, attn.fill]);
    return x.reshape([B, T, d]);
  }

  /**
   * Loss and gradients of `variables` (adapters, and any head the loss uses) for training adapters on blocks
   * [from, n) through the hand-written backward; `loss` maps the final hidden states to a scalar.
   */
  lossAndGradients(
    hidden: tf.Tensor3D,
    mask: tf.Tensor2D,
    from: number,
    adapters: Adapters,
    variables: tf.Variable[],
    loss: (final: tf.Tensor3D) => tf.Scalar,
  ): { loss: tf.Scalar; grads: Record<string, tf.Tensor> } {
    const { value, grads } = tf.variableGrads(() => loss(this.trainForward(hidden, mask, from, adapters)), variables);
    return { loss: value, grads };
  }

  /** Mean next-token cross-entropy of final hidden states against token labels [B*T] (IGNORE_INDEX: no loss), through the tied head. */
  lmLoss(final: tf.Tensor3D, labels: Int32Array): tf.Scalar {
    const { rows, targets } = labelledRows(final, labels);
    return chunkedLmLoss(layerNorm(rows, this.weights.lnF, this.config), this.tiedHead().weight, this.embeddingTables().wte, targets);
  }

  /** Hidden states after blocks [0, upTo): what the device prefix with cut `upTo` computes. */
  hidden(ids: tf.Tensor2D, mask: tf.Tensor2D, upTo = this.config.nLayer): tf.Tensor3D {
    return tf.tidy(() => this.blocksForward(this.embed(ids, mask), mask, 0, upTo));
  }

  /** Final hidden states [B, T, d] -> each row's last real token, after the final layer norm: the head's input [B, d]. */
  pool(hidden: tf.Tensor3D, mask: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => layerNorm(lastTokens(hidden, mask), this.weights.lnF, this.config));
  }

  /** Classification logits [B, num_labels] from the final hidden states, through the model's own head. */
  classify(hidden: tf.Tensor3D, mask: tf.Tensor2D): tf.Tensor2D {
    if (!this.score) throw new Error(`the model has no classification head (${SCORE})`);
    return tf.tidy(() => this.score!.apply(this.pool(hidden, mask)));
  }

  /** Classification logits from hidden states at cut k: the server's forward for one device batch. */
  classifyFromCut(hidden: tf.Tensor3D, mask: tf.Tensor2D, cut: number): tf.Tensor2D {
    return tf.tidy(() => this.classify(this.blocksForward(hidden, mask, cut), mask));
  }

  /** Next-token logits [rows, vocab] of final hidden states [rows, d] through the tied LM head. */
  lmLogits(hidden: tf.Tensor2D): tf.Tensor2D {
    const head = this.tiedHead();
    return tf.tidy(() => head.apply(layerNorm(hidden, this.weights.lnF, this.config)));
  }

  dispose(): void {
    disposeWeights(this.weights);
    if (this.embeddings) tf.dispose([this.embeddings.wte, this.embeddings.wpe]);
    this.score?.dispose();
    this.lmHead?.dispose();
  }
}
