/**
 * GPT-2 in TensorFlow.js for the training server: the full model, or any suffix (blocks [k, n) + head) applied to
 * hidden states that devices computed at cut k. Padding conventions: core/model/masking.ts.
 *
 * Speed rule (STACK-NOTES): on the WASM backend only a plain 2-D, non-transposed MatMul is fast. Every frozen linear
 * therefore runs on [rows, in] x [in, out], and its backward multiplies by a pre-transposed copy of the weight
 * instead of letting autodiff produce a transposed MatMul.
 */
import * as tf from '@tensorflow/tfjs';
import { MASKED_SCORE } from '../../core/model/masking.ts';
import { BLOCK_LINEARS, linearShape, param, SCORE, type BlockLinear, type GPT2Model } from '../../core/model/weights.ts';
import type { GPT2Config } from '../../core/model/config.ts';

/** A linear layer whose weight never trains: y = x @ W + b, with dx = dy @ W^T as a plain MatMul too. */
export class FrozenLinear {
  readonly weight: tf.Tensor2D;
  private readonly weightT: tf.Tensor2D;
  private readonly bias: tf.Tensor1D | undefined;
  private readonly fn: (x: tf.Tensor2D) => tf.Tensor2D;

  constructor(weight: tf.Tensor2D, bias?: tf.Tensor1D, weightT?: tf.Tensor2D) {
    this.weight = weight;
    this.weightT = weightT ?? weight.transpose();
    this.bias = bias;
    this.fn = tf.customGrad((x) => ({
      value: this.bias ? tf.add(tf.matMul(x as tf.Tensor2D, this.weight), this.bias) : tf.matMul(x as tf.Tensor2D, this.weight),
      gradFunc: (dy) => tf.matMul(dy as tf.Tensor2D, this.weightT),
    })) as (x: tf.Tensor2D) => tf.Tensor2D;
  }

  /** x: [rows, in] -> [rows, out]. */
  apply(x: tf.Tensor2D): tf.Tensor2D {
    return this.fn(x);
  }

  dispose(): void {
    tf.dispose([this.weight, this.weightT, this.bias].filter((t) => t !== undefined));
  }
}

/**
 * A linear layer whose weight and bias train (pretraining all weights): both directions stay plain 2-D MatMuls,
 * dx = dy W^T and dW = x^T dy with explicit transposes, which the WASM backend runs far faster than transposed
 * MatMuls.
 */
export class TrainableLinear {
  readonly weight: tf.Variable<tf.Rank.R2>;
  readonly bias: tf.Variable<tf.Rank.R1>;
  private readonly fn: (x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D) => tf.Tensor2D;

  constructor(weight: tf.Tensor2D, bias: tf.Tensor1D) {
    this.weight = tf.variable(weight);
    this.bias = tf.variable(bias);
    this.fn = tf.customGrad((x, w, b, save) => {
      (save as tf.GradSaveFunc)([x as tf.Tensor2D, w as tf.Tensor2D]);
      return {
        value: tf.add(tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D), b as tf.Tensor1D),
        gradFunc: (dy, [xs, ws]) => [tf.matMul(dy as tf.Tensor2D, tf.transpose(ws)), tf.matMul(tf.transpose(xs), dy as tf.Tensor2D), tf.sum(dy, 0)],
      };
    }) as (x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D) => tf.Tensor2D;
  }

  apply(x: tf.Tensor2D): tf.Tensor2D {
    return this.fn(x, this.weight, this.bias);
  }

  dispose(): void {
    tf.dispose([this.weight, this.bias]);
  }
}

type Linear = FrozenLinear | TrainableLinear;

/**
 * Rows of a table (embeddings) whose gradient is a plain MatMul with a one-hot matrix built transposed: the WASM
 * backend has no kernel for gather's own gradient (UnsortedSegmentSum).
 */
const gatherRows = tf.customGrad((table, idx, save) => {
  (save as tf.GradSaveFunc)([idx as tf.Tensor]);
  return {
    value: tf.gather(table as tf.Tensor2D, idx as tf.Tensor),
    gradFunc: (dy, [ids]) => {
      const [rows, d] = (table as tf.Tensor2D).shape;
      const flat = ids.reshape([-1]);
      const oneHotT = tf.cast(tf.equal(tf.range(0, rows, 1, 'int32').reshape([rows, 1]), flat.reshape([1, -1])), 'float32');
      return [tf.matMul(oneHotT as tf.Tensor2D, dy.reshape([-1, d]) as tf.Tensor2D), tf.zerosLike(ids)];
    },
  };
}) as (table: tf.Tensor2D, idx: tf.Tensor) => tf.Tensor;

/** Logits of the tied LM head, x wte^T, with dwte = dy^T x as a plain MatMul. */
const tiedLogits = tf.customGrad((x, wte, save) => {
  (save as tf.GradSaveFunc)([x as tf.Tensor2D, wte as tf.Tensor2D]);
  return {
    value: tf.matMul(x as tf.Tensor2D, tf.transpose(wte as tf.Tensor2D)),
    gradFunc: (dy, [xs, ws]) => [tf.matMul(dy as tf.Tensor2D, ws), tf.matMul(tf.transpose(dy as tf.Tensor2D), xs)],
  };
}) as (x: tf.Tensor2D, wte: tf.Tensor2D) => tf.Tensor2D;

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/**
 * GPT-2's GELU (tanh approximation) as one differentiable step that keeps only its input for the backward pass:
 * written as plain ops, autodiff would keep half a dozen tensors of the MLP's width alive per block, which at GPT-2
 * small's size is most of the tape. 0.5 x (1 + tanh u) is computed as x sigmoid(2u), and x^3 as x * x * x: the WASM
 * backend's Tanh and Pow are scalar loops, ten times slower than its Sigmoid and Multiply.
 */
export const gelu = tf.customGrad((x, save) => {
  (save as tf.GradSaveFunc)([x as tf.Tensor]);
  // sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3)
  const s = (v: tf.Tensor) => tf.sigmoid(tf.mul(tf.add(v, tf.mul(tf.mul(tf.mul(v, v), v), 0.044715)), 2 * SQRT_2_OVER_PI));
  return {
    value: tf.mul(x as tf.Tensor, s(x as tf.Tensor)),
    gradFunc: (dy, [xs]) =>
      tf.tidy(() => {
        // d/dx x s = s + x s (1 - s) 2u', u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
        const sg = s(xs);
        const du2 = tf.mul(tf.add(1, tf.mul(tf.square(xs), 3 * 0.044715)), 2 * SQRT_2_OVER_PI);
        return tf.mul(dy, tf.add(sg, tf.mul(tf.mul(tf.mul(xs, sg), tf.sub(1, sg)), du2)));
      }),
  };
}) as (x: tf.Tensor2D) => tf.Tensor2D;

/**
 * Adds a trainable term to a frozen linear's output (LoRA): given the layer, the linear and its input [rows, in],
 * returns [rows, out] to add, or undefined where the linear has no adapter.
 */
export type LinearDelta = (layer: number, linear: BlockLinear, x: tf.Tensor2D) => tf.Tensor2D | undefined;

interface LayerNorm {
  weight: tf.Tensor1D;
  bias: tf.Tensor1D;
}

interface Block {
  ln1: LayerNorm;
  ln2: LayerNorm;
  linears: Record<BlockLinear, Linear>;
}

/**
 * The attention mask in the form every block uses: which key each query may see, and the score that replaces a
 * hidden one, both at the scores' full shape [B, H, T, T]. Built once per forward: broadcasting them inside each
 * block's Select would tile them there, which on the WASM backend costs more than the attention itself.
 */
interface AttentionMask {
  allowed: tf.Tensor4D;
  hidden: tf.Tensor4D;
}

export function attentionMask(mask: tf.Tensor2D, heads: number): AttentionMask {
  return tf.tidy(() => {
    const [B, T] = mask.shape;
    const r = tf.range(0, T, 1, 'int32');
    const causal = tf.cast(tf.lessEqual(r.reshape([1, 1, 1, T]), r.reshape([1, 1, T, 1])), 'float32'); // [query i, key j]: j <= i
    // Broadcast by Multiply: the WASM backend's broadcasting LogicalAnd and Tile are scalar loops.
    const seen = tf.mul(tf.mul(causal, tf.cast(mask, 'float32').reshape([B, 1, 1, T])), tf.ones([1, heads, 1, 1]));
    return { allowed: tf.greater(seen, 0.5) as tf.Tensor4D, hidden: tf.fill([B, heads, T, T], MASKED_SCORE) as tf.Tensor4D };
  });
}

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
      const pos = tf.maximum(tf.sub(tf.cumsum(tf.cast(mask, 'int32'), 1), tf.scalar(1, 'int32')), tf.scalar(0, 'int32'));
      const rows = this.trainable ? gatherRows : (t: tf.Tensor2D, i: tf.Tensor) => tf.gather(t, i);
      return tf.add(rows(wte, ids), rows(wpe, pos)) as tf.Tensor3D;
    });
  }

  private layerNorm(x: tf.Tensor2D, { weight, bias }: LayerNorm): tf.Tensor2D {
    const { mean, variance } = tf.moments(x, -1, true);
    return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, this.config.layerNormEpsilon))), weight), bias);
  }

  private linear(block: Block, layer: number, name: BlockLinear, x: tf.Tensor2D, delta?: LinearDelta): tf.Tensor2D {
    const y = block.linears[name].apply(x);
    const extra = delta?.(layer, name, x);
    return extra ? tf.add(y, extra) : y;
  }

  private attention(block: Block, layer: number, x: tf.Tensor2D, mask: AttentionMask, B: number, T: number, delta?: LinearDelta): tf.Tensor2D {
    const { nEmbd: d, nHead: H } = this.config;
    const hd = d / H;
    const qkv = this.linear(block, layer, 'attn.c_attn', x, delta);
    const heads = (t: tf.Tensor) => t.reshape([B, T, H, hd]).transpose([0, 2, 1, 3]);
    const [q, k, v] = tf.split(qkv, 3, 1).map(heads);
    const scores = tf.where(mask.allowed, tf.matMul(tf.mul(q, 1 / Math.sqrt(hd)), k, false, true), mask.hidden);
    const y = tf.matMul(tf.softmax(scores), v).transpose([0, 2, 1, 3]).reshape([B * T, d]) as tf.Tensor2D;
    return this.linear(block, layer, 'attn.c_proj', y, delta);
  }

  private mlp(block: Block, layer: number, x: tf.Tensor2D, delta?: LinearDelta): tf.Tensor2D {
    const h = this.linear(block, layer, 'mlp.c_fc', x, delta);
    return this.linear(block, layer, 'mlp.c_proj', gelu(h), delta);
  }

  /** Runs blocks [from, to) on hidden states [B, T, d], with adapters if given. Use inside tf.tidy or a gradient function. */
  blocksForward(hidden: tf.Tensor3D, mask: tf.Tensor2D, from: number, to = this.config.nLayer, delta?: LinearDelta): tf.Tensor3D {
    const [B, T, d] = hidden.shape;
    const attn = attentionMask(mask, this.config.nHead);
    let x = hidden.reshape([B * T, d]) as tf.Tensor2D;
    for (let i = from; i < to; i++) {
      const block = this.blocks[i];
      if (!block) throw new Error(`block ${i} is below this model's first block; it runs on the device`);
      x = tf.add(x, this.attention(block, i, this.layerNorm(x, block.ln1), attn, B, T, delta));
      x = tf.add(x, this.mlp(block, i, this.layerNorm(x, block.ln2), delta));
    }
    tf.dispose([attn.allowed, attn.hidden]);
    return x.reshape([B, T, d]);
  }

  /** Hidden states after blocks [0, upTo): what the device prefix with cut `upTo` computes. */
  hidden(ids: tf.Tensor2D, mask: tf.Tensor2D, upTo = this.config.nLayer): tf.Tensor3D {
    return tf.tidy(() => this.blocksForward(this.embed(ids, mask), mask, 0, upTo));
  }

  /** Final hidden states [B, T, d] -> each row's last real token, after the final layer norm: the head's input [B, d]. */
  pool(hidden: tf.Tensor3D, mask: tf.Tensor2D): tf.Tensor2D {
    const [B, T] = hidden.shape;
    return tf.tidy(() => {
      // Last real token: argmax over t of (mask * T + t); a row without real tokens pools t = T - 1.
      // A one-hot sum rather than gather, whose gradient the WASM backend lacks.
      const t = tf.range(0, T, 1, 'int32').reshape([1, T]);
      const last = tf.argMax(tf.add(tf.mul(tf.cast(mask, 'int32'), tf.scalar(T, 'int32')), t), 1);
      const pooled = tf.sum(tf.mul(hidden, tf.oneHot(last, T).reshape([B, T, 1])), 1) as tf.Tensor2D;
      return this.layerNorm(pooled, this.lnF);
    });
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
