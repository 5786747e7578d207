/**
 * GPT-2 with every weight a variable, for pretraining (experiments/pretrain.ts): the frozen server model's blocks
 * (gpt2-block.ts) through autodiff, with linears, embedding rows and the tied LM head whose gradients stay plain
 * MatMuls on the WASM backend (ops.ts). The classification head is not part of it.
 */
import * as tf from '@tensorflow/tfjs';
import type { GPT2Config } from '../../../core/model/gpt2/config.ts';
import { param, type GPT2Model } from '../../../core/model/gpt2/weights.ts';
import { blockAt, blocksForward, disposeWeights, embed, layerNorm, uploadWeights, type GPT2Weights } from './gpt2-block.ts';
import { gatherRows, tiedLogits, TrainableLinear } from './ops.ts';

export class TrainableGPT2 {
  readonly config: GPT2Config;
  private readonly weights: GPT2Weights<TrainableLinear, tf.Variable<tf.Rank.R1>>;
  private readonly wte: tf.Variable<tf.Rank.R2>;
  private readonly wpe: tf.Variable<tf.Rank.R2>;

  constructor(model: GPT2Model) {
    const c = (this.config = model.config);
    this.weights = uploadWeights(
      model,
      0,
      (t) => tf.variable(t),
      (weight, bias) => new TrainableLinear(weight, bias),
    );
    const table = (name: string, rows: number) => tf.variable(tf.tensor2d(param(model, name), [rows, c.nEmbd]));
    this.wte = table('wte.weight', c.vocabSize);
    this.wpe = table('wpe.weight', c.nPositions);
  }

  /** Hidden states after blocks [0, upTo). */
  hidden(ids: tf.Tensor2D, mask: tf.Tensor2D, upTo = this.config.nLayer): tf.Tensor3D {
    return tf.tidy(() => blocksForward(this.weights, embed(this.config, this.wte, this.wpe, ids, mask, gatherRows), mask, 0, upTo));
  }

  /** Next-token logits [rows, vocab] of final hidden states [rows, d] through the tied LM head. */
  lmLogits(hidden: tf.Tensor2D): tf.Tensor2D {
    return tiedLogits(layerNorm(hidden, this.weights.lnF, this.config), this.wte);
  }

  /** Every weight under its Hugging Face name. */
  variables(): Map<string, tf.Variable> {
    const { lnF } = this.weights;
    const out = new Map<string, tf.Variable>([
      ['wte.weight', this.wte],
      ['wpe.weight', this.wpe],
      ['ln_f.weight', lnF.weight],
      ['ln_f.bias', lnF.bias],
    ]);
    for (let i = 0; i < this.config.nLayer; i++) {
      const b = blockAt(this.weights, i);
      for (const [n, ln] of [
        ['ln_1', b.ln1],
        ['ln_2', b.ln2],
      ] as const) {
        out.set(`h.${i}.${n}.weight`, ln.weight);
        out.set(`h.${i}.${n}.bias`, ln.bias);
      }
      for (const [n, l] of Object.entries(b.linears)) {
        out.set(`h.${i}.${n}.weight`, l.weight);
        out.set(`h.${i}.${n}.bias`, l.bias);
      }
    }
    return out;
  }

  dispose(): void {
    disposeWeights(this.weights);
    tf.dispose([this.wte, this.wpe]);
  }
}
