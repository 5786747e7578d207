/**
 * GPT-2 in TensorFlow.js for the training server: the full model, or any suffix (blocks [k, n) + head) applied to
 * hidden states that devices computed at cut k, with LoRA adapters on its frozen linears. Padding conventions:
 * core/model/masking.ts; the differentiable steps it is made of: ops.ts.
 *
 * Training the adapters goes through trainForward, whose blocks each have a hand-written backward (blockBackward):
 * autodiff would keep every intermediate tensor of every block and every intermediate gradient until the backward
 * pass ends (GPT-2 small: ~300 MB per block at batch 8 x 128, past WebAssembly's 4 GB at 10 blocks); the written
 * backward keeps a handful per block. Pretraining all weights and inference use the same block through autodiff.
 */
import * as tf from '@tensorflow/tfjs';
import { BLOCK_LINEARS, linearShape, param, SCORE, type BlockLinear, type GPT2Model } from '../../core/model/weights.ts';
import type { GPT2Config } from '../../core/model/config.ts';
import { attentionMask, chunkedLmLoss, lastTokens, positionIds, dropout, FrozenLinear, gatherRows, labelledRows, gelu, geluBackward, lowRank, lowRankBackward, normalize, normalizeBackward, tiedLogits, TrainableLinear, type AttentionMask, type Linear } from './ops.ts';

/** LoRA on one frozen linear: y += (keep * x) A B * scale, A [in, r], B [r, out]; keep: the dropout multiplier [rows, in]. */
export interface LinearAdapter {
  a: tf.Tensor2D;
  b: tf.Tensor2D;
  scale: number;
  keep?: tf.Tensor2D;
}

/** The adapters of a block's linears for a batch of `rows` rows, by linear (none: no adapter there). */
export type Adapters = (layer: number, rows: number) => Partial<Record<string, LinearAdapter>>;

interface LayerNorm {
  weight: tf.Tensor1D;
  bias: tf.Tensor1D;
}

interface Block {
  ln1: LayerNorm;
  ln2: LayerNorm;
  linears: Record<BlockLinear, Linear>;
}

/** What a block's hand-written backward needs from its forward, by name (see TfGPT2.block). */
type Saved = Record<string, tf.Tensor>;

export class TfGPT2 {
  readonly config: GPT2Config;
  private readonly model: GPT2Model;
  private readonly blocks: Array<Block | undefined> = [];
  private readonly lnF: LayerNorm;
  private readonly score: FrozenLinear | undefined;
  /** Uploaded on first use: a suffix that starts at a cut and classifies never needs the vocabulary table. */
  private embeddings: { wte: tf.Tensor2D; wpe: tf.Tensor2D } | undefined;
  private lmHead: FrozenLinear | undefined;

  /** Every weight is a variable that trains (pretraining); otherwise all are frozen. */
  readonly trainable: boolean;

  /** Uploads the parameters of blocks [firstBlock, n) and the head; blocks below firstBlock run on the devices. */
  constructor(model: GPT2Model, { firstBlock = 0, trainable = false }: { firstBlock?: number; trainable?: boolean } = {}) {
    this.model = model;
    this.trainable = trainable;
    const c = (this.config = model.config);
    const t1 = (name: string) => (trainable ? tf.variable(tf.tensor1d(param(model, name))) : tf.tensor1d(param(model, name)));
    const ln = (prefix: string): LayerNorm => ({ weight: t1(`${prefix}.weight`), bias: t1(`${prefix}.bias`) });
    for (let i = 0; i < c.nLayer; i++) {
      if (i < firstBlock) {
        this.blocks.push(undefined);
        continue;
      }
      const linears = {} as Record<BlockLinear, Linear>;
      for (const name of BLOCK_LINEARS) {
        const weight = tf.tensor2d(param(model, `h.${i}.${name}.weight`), linearShape(c, name));
        const bias = tf.tensor1d(param(model, `h.${i}.${name}.bias`));
        linears[name] = trainable ? new TrainableLinear(weight, bias) : new FrozenLinear(weight, bias);
      }
      this.blocks.push({ ln1: ln(`h.${i}.ln_1`), ln2: ln(`h.${i}.ln_2`), linears });
    }
    this.lnF = ln('ln_f');
    const score = model.params.get(SCORE);
    if (score) {
      const scoreT = tf.tensor2d(score, [c.numLabels, c.nEmbd]); // nn.Linear layout [out, in]
      this.score = new FrozenLinear(scoreT.transpose(), undefined, scoreT);
    }
  }

  private embeddingTables() {
    const c = this.config;
    const table = (name: string, rows: number) => {
      const t = tf.tensor2d(param(this.model, name), [rows, c.nEmbd]);
      // Kept: the first use may be inside a tf.tidy.
      return this.trainable ? tf.variable(t) : tf.keep(t);
    };
    return (this.embeddings ??= { wte: table('wte.weight', c.vocabSize), wpe: table('wpe.weight', c.nPositions) });
  }

  /** Token + position embeddings: ids and mask [B, T] int32 -> [B, T, d]. */
  embed(ids: tf.Tensor2D, mask: tf.Tensor2D): tf.Tensor3D {
    const T = ids.shape[1];
    if (T > this.config.nPositions) throw new RangeError(`sequence length ${T} exceeds the model's n_positions (${this.config.nPositions}): truncate the input`);
    return tf.tidy(() => {
      const { wte, wpe } = this.embeddingTables();
      const pos = positionIds(mask);
      const rows = this.trainable ? gatherRows : (t: tf.Tensor2D, i: tf.Tensor) => tf.gather(t, i);
      return tf.add(rows(wte, ids), rows(wpe, pos)) as tf.Tensor3D;
    });
  }

  private layerNorm(x: tf.Tensor2D, { weight, bias }: LayerNorm, saved?: Saved, name = ''): tf.Tensor2D {
    const { xhat, rstd } = normalize(x, this.config.layerNormEpsilon);
    if (saved) Object.assign(saved, { [`xhat${name}`]: xhat, [`rstd${name}`]: rstd });
    return tf.add(tf.mul(xhat, weight), bias);
  }

  private heads(t: tf.Tensor, B: number, T: number): tf.Tensor4D {
    const { nEmbd: d, nHead: H } = this.config;
    return t.reshape([B, T, H, d / H]).transpose([0, 2, 1, 3]);
  }

  private merge(t: tf.Tensor): tf.Tensor2D {
    const [B, H, T, hd] = t.shape;
    return t.transpose([0, 2, 1, 3]).reshape([B! * T!, H! * hd!]);
  }

  /**
   * Block i on [B*T, d]. With `saved`, also records what blockBackward needs: normalised inputs, q, k, v, the
   * attention probabilities, the MLP's pre-activation, and the input of each adapted linear.
   */
  private block(i: number, x: tf.Tensor2D, attn: AttentionMask, B: number, T: number, adapters: Partial<Record<string, LinearAdapter>>, saved?: Saved): tf.Tensor2D {
    const block = this.blocks[i];
    if (!block) throw new Error(`block ${i} is below this model's first block; it runs on the device`);
    const linear = (name: BlockLinear, input: tf.Tensor2D) => {
      const y = block.linears[name].apply(input);
      const ad = adapters[name];
      if (!ad) return y;
      const x = dropout(input, ad.keep);
      let low: tf.Tensor2D;
      if (saved) {
        // No tape here (trainForward's step): keep x A for the backward rather than recompute it there.
        const xa = tf.matMul(x, ad.a);
        Object.assign(saved, { [`in:${name}`]: input, [`xa:${name}`]: xa });
        low = tf.matMul(xa, ad.b);
      } else low = lowRank(x, ad.a, ad.b);
      return tf.add(y, tf.mul(low, ad.scale)) as tf.Tensor2D;
    };
    const [q, k, v] = tf.split(linear('attn.c_attn', this.layerNorm(x, block.ln1, saved, '1')), 3, 1).map((t) => this.heads(t, B, T));
    const p = tf.softmax(tf.add(tf.mul(tf.matMul(q!, k!, false, true), attn.scale), attn.fill));
    const x2 = tf.add(x, linear('attn.c_proj', this.merge(tf.matMul(p, v!)))) as tf.Tensor2D;
    const h = linear('mlp.c_fc', this.layerNorm(x2, block.ln2, saved, '2'));
    if (saved) Object.assign(saved, { q, k, v, p, h });
    return tf.add(x2, linear('mlp.c_proj', gelu(h)));
  }

  /**
   * The adapters' gradients [dA, dB] by linear from dy, and dx, of block i: autodiff of block() written out, with
   * LayerNorm weights frozen. Without `needDx` it stops at the lowest adapted linear, as autodiff stops at the lowest
   * trainable op (dx is then undefined). Runs inside the backward pass; `s` is what block() saved.
   */
  private blockBackward(i: number, dy: tf.Tensor2D, s: Saved, scale: tf.Tensor4D, B: number, T: number, adapters: Partial<Record<string, LinearAdapter>>, needDx: boolean) {
    const block = this.blocks[i]!;
    const grads = new Map<BlockLinear, tf.Tensor2D[]>();
    // Backward meets the linears top down; below the lowest adapted one, only dx would need their gradients.
    const order: BlockLinear[] = ['mlp.c_proj', 'mlp.c_fc', 'attn.c_proj', 'attn.c_attn'];
    const lowest = Math.max(...order.map((name, j) => (adapters[name] ? j : -1)));
    const linear = (name: BlockLinear, dout: tf.Tensor2D): tf.Tensor2D | undefined => {
      const ad = adapters[name];
      const needInput = needDx || order.indexOf(name) < lowest;
      const dx = needInput ? (block.linears[name] as FrozenLinear).backward(dout) : undefined;
      if (!ad) return dx;
      const input = dropout(s[`in:${name}`] as tf.Tensor2D, ad.keep);
      const { dxa, da, db } = lowRankBackward(input, ad.b, s[`xa:${name}`] as tf.Tensor2D, tf.mul(dout, ad.scale));
      grads.set(name, [da, db]);
      return dx && (tf.add(dx, dropout(tf.matMul(dxa, tf.transpose(ad.a)), ad.keep)) as tf.Tensor2D);
    };
    const layerNorm = (dout: tf.Tensor2D, ln: LayerNorm, name: string) => normalizeBackward(tf.mul(dout, ln.weight) as tf.Tensor2D, s[`xhat${name}`] as tf.Tensor2D, s[`rstd${name}`] as tf.Tensor2D);
    // MLP: y = x2 + c_proj(gelu(c_fc(ln2(x2))))
    const dg = linear('mlp.c_proj', dy);
    const dc = dg && linear('mlp.c_fc', geluBackward(s.h as tf.Tensor2D, dg));
    if (!dc) return { grads };
    const dx2: tf.Tensor2D = tf.add(dy, layerNorm(dc, block.ln2, '2'));
    // Attention: x2 = x + c_proj(merge(softmax(q k^T * scale + fill) v))
    const dMerged = linear('attn.c_proj', dx2);
    if (!dMerged) return { grads };
    const [q, k, v, p] = [s.q, s.k, s.v, s.p] as tf.Tensor4D[];
    const dOut = this.heads(dMerged, B, T);
    const dp = tf.matMul(dOut, v!, false, true);
    const dScores = tf.mul(tf.mul(p!, tf.sub(dp, tf.sum(tf.mul(dp, p!), -1, true))), scale);
    const dqkv = tf.concat<tf.Tensor2D>([tf.matMul(dScores, k!), tf.matMul(dScores, q!, true), tf.matMul(p!, dOut, true)].map((t) => this.merge(t)), 1);
    const da = linear('attn.c_attn', dqkv);
    return { dx: da && (tf.add(dx2, layerNorm(da, block.ln1, '1')) as tf.Tensor2D), grads };
  }

  /**
   * Runs blocks [from, to) on hidden states [B, T, d], with adapters if given: inference, or autodiff through every
   * op (pretraining). Use inside tf.tidy or a gradient function.
   */
  blocksForward(hidden: tf.Tensor3D, mask: tf.Tensor2D, from: number, to = this.config.nLayer, adapters?: Adapters): tf.Tensor3D {
    const [B, T, d] = hidden.shape;
    const attn = attentionMask(mask, this.config.nHead, d / this.config.nHead);
    let x = hidden.reshape([B * T, d]) as tf.Tensor2D;
    for (let i = from; i < to; i++) x = this.block(i, x, attn, B, T, adapters?.(i, B * T) ?? {});
    tf.dispose([attn.scale, attn.fill]);
    return x.reshape([B, T, d]);
  }

  /**
   * Blocks [from, n) of the frozen model for training its adapters: the same computation as blocksForward, as one
   * differentiable step per block whose backward is blockBackward. Gradients reach the adapters' A and B tensors,
   * and the hidden states only with `inputGradient` (otherwise theirs is zero and the backward pass stops at the
   * lowest adapter, as autodiff's would); call inside tf.variableGrads or tf.grads.
   */
  trainForward(hidden: tf.Tensor3D, mask: tf.Tensor2D, from: number, adapters: Adapters, { inputGradient = false } = {}): tf.Tensor3D {
    if (this.trainable) throw new Error('trainForward trains adapters on a frozen model; a trainable model trains through blocksForward');
    const [B, T, d] = hidden.shape;
    const attn = attentionMask(mask, this.config.nHead, d / this.config.nHead);
    let x = hidden.reshape([B * T, d]) as tf.Tensor2D;
    for (let i = from; i < this.config.nLayer; i++) {
      const ads = adapters(i, B * T);
      const adapted = BLOCK_LINEARS.filter((name) => ads[name]);
      const keeps = adapted.flatMap((name) => ads[name]!.keep ?? []);
      const step = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
        const save = args.at(-1) as tf.GradSaveFunc;
        const saved: Saved = {};
        const y = this.block(i, args[0] as tf.Tensor2D, attn, B, T, ads, saved);
        const names = Object.keys(saved);
        // The mask and dropout multipliers are saved too: the backward pass runs after this loop has let them go.
        save([...names.map((n) => saved[n]!), attn.scale, ...keeps]);
        return {
          value: y,
          gradFunc: (dy: tf.Tensor, s: tf.Tensor[]) =>
            tf.tidy(() => {
              const back = Object.fromEntries(names.map((n, j) => [n, s[j]!]));
              const kept = s.slice(names.length + 1);
              const ads2 = Object.fromEntries(adapted.map((name) => [name, { ...ads[name]!, keep: ads[name]!.keep && kept.shift() }])) as typeof ads;
              const { dx, grads } = this.blockBackward(i, dy as tf.Tensor2D, back, s[names.length] as tf.Tensor4D, B, T, ads2, inputGradient || i > from);
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
  lossAndGradients(hidden: tf.Tensor3D, mask: tf.Tensor2D, from: number, adapters: Adapters, variables: tf.Variable[], loss: (final: tf.Tensor3D) => tf.Scalar): { loss: tf.Scalar; grads: Record<string, tf.Tensor> } {
    const { value, grads } = tf.variableGrads(() => loss(this.trainForward(hidden, mask, from, adapters)), variables);
    return { loss: value, grads };
  }

  /** Mean next-token cross-entropy of final hidden states against token labels [B*T] (IGNORE_INDEX: no loss), through the tied head. */
  lmLoss(final: tf.Tensor3D, labels: Int32Array): tf.Scalar {
    const { rows, targets } = labelledRows(final, labels);
    const { wte } = this.embeddingTables();
    this.lmHead ??= new FrozenLinear(wte.transpose(), undefined, wte.clone());
    return chunkedLmLoss(this.layerNorm(rows, this.lnF), this.lmHead.weight, wte, targets);
  }

  /** Hidden states after blocks [0, upTo): what the device prefix with cut `upTo` computes. */
  hidden(ids: tf.Tensor2D, mask: tf.Tensor2D, upTo = this.config.nLayer): tf.Tensor3D {
    return tf.tidy(() => this.blocksForward(this.embed(ids, mask), mask, 0, upTo));
  }

  /** Final hidden states [B, T, d] -> each row's last real token, after the final layer norm: the head's input [B, d]. */
  pool(hidden: tf.Tensor3D, mask: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => this.layerNorm(lastTokens(hidden, mask), this.lnF));
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
    const { wte } = this.embeddingTables();
    if (this.trainable) return tiedLogits(this.layerNorm(hidden, this.lnF), wte);
    // Frozen, the tied head is wte^T, transposed once on first use.
    this.lmHead ??= new FrozenLinear(wte.transpose(), undefined, wte.clone());
    return tf.tidy(() => this.lmHead!.apply(this.layerNorm(hidden, this.lnF)));
  }

  /** The model's weights under their Hugging Face names (variables, in a trainable model). */
  weights(): Map<string, tf.Tensor> {
    const { wte, wpe } = this.embeddingTables();
    const out = new Map<string, tf.Tensor>([
      ['wte.weight', wte],
      ['wpe.weight', wpe],
      ['ln_f.weight', this.lnF.weight],
      ['ln_f.bias', this.lnF.bias],
    ]);
    this.blocks.forEach((b, i) => {
      if (!b) return;
      for (const [n, ln] of [['ln_1', b.ln1], ['ln_2', b.ln2]] as const) {
        out.set(`h.${i}.${n}.weight`, ln.weight);
        out.set(`h.${i}.${n}.bias`, ln.bias);
      }
      for (const [n, l] of Object.entries(b.linears)) {
        out.set(`h.${i}.${n}.weight`, l.weight);
        if (l instanceof TrainableLinear) out.set(`h.${i}.${n}.bias`, l.bias);
      }
    });
    return out;
  }

  /** The trainable weights, by name (trainable models only). */
  variables(): Map<string, tf.Variable> {
    return new Map([...this.weights()].filter((e): e is [string, tf.Variable] => e[1] instanceof tf.Variable));
  }

  dispose(): void {
    tf.dispose([this.lnF.weight, this.lnF.bias]);
    if (this.embeddings) tf.dispose([this.embeddings.wte, this.embeddings.wpe]);
    for (const b of this.blocks) {
      if (!b) continue;
      tf.dispose([b.ln1.weight, b.ln1.bias, b.ln2.weight, b.ln2.bias]);
      for (const l of Object.values(b.linears)) l.dispose();
    }
    this.score?.dispose();
    this.lmHead?.dispose();
  }
}
