/**
 * GPT-2's math on the server, shared by its two models: the frozen one (gpt2.ts: inference, and adapter training
 * through the hand-written blockBackward) and the trainable one (gpt2-trainable.ts: pretraining every weight through
 * autodiff). The weights as uploaded, the embeddings, a block's forward, and its backward with what that keeps of the
 * forward (BlockTape). The differentiable steps they are made of: ops.ts.
 */
import * as tf from '@tensorflow/tfjs';
import type { GPT2Config } from '../../../core/model/gpt2/config.ts';
import { BLOCK_LINEARS, linearShape, param, type BlockLinear, type GPT2Model } from '../../../core/model/gpt2/weights.ts';
import {
  attentionMask,
  dropout,
  gelu,
  geluBackward,
  lowRank,
  lowRankBackward,
  normalize,
  normalizeBackward,
  positionIds,
  type Adapters,
  type AttentionMask,
  type BlockAdapters,
  type FrozenLinear,
  type Linear,
  type Normalized,
} from './ops.ts';

/** A layer norm's weight and bias: tensors, or variables where they train. */
export interface LayerNorm<V extends tf.Tensor1D = tf.Tensor1D> {
  weight: V;
  bias: V;
}

export interface Block<L extends Linear, V extends tf.Tensor1D = tf.Tensor1D> {
  ln1: LayerNorm<V>;
  ln2: LayerNorm<V>;
  linears: Record<BlockLinear, L>;
}

/** Blocks [firstBlock, n) (undefined below it: those run on the devices) and the final layer norm. */
export interface GPT2Weights<L extends Linear, V extends tf.Tensor1D = tf.Tensor1D> {
  config: GPT2Config;
  blocks: Array<Block<L, V> | undefined>;
  lnF: LayerNorm<V>;
}

/** Uploads blocks [firstBlock, n) and ln_f: each norm vector through `vector`, each linear through `linear`. */
export function uploadWeights<L extends Linear, V extends tf.Tensor1D>(
  model: GPT2Model,
  firstBlock: number,
  vector: (t: tf.Tensor1D) => V,
  linear: (weight: tf.Tensor2D, bias: tf.Tensor1D) => L,
): GPT2Weights<L, V> {
  const c = model.config;
  const ln = (prefix: string): LayerNorm<V> => ({
    weight: vector(tf.tensor1d(param(model, `${prefix}.weight`))),
    bias: vector(tf.tensor1d(param(model, `${prefix}.bias`))),
  });
  const blocks = Array.from({ length: c.nLayer }, (_, i) => {
    if (i < firstBlock) return undefined;
    const linears = {} as Record<BlockLinear, L>;
    for (const name of BLOCK_LINEARS)
      linears[name] = linear(tf.tensor2d(param(model, `h.${i}.${name}.weight`), linearShape(c, name)), tf.tensor1d(param(model, `h.${i}.${name}.bias`)));
    return { linears, ln1: ln(`h.${i}.ln_1`), ln2: ln(`h.${i}.ln_2`) };
  });
  return { config: c, blocks, lnF: ln('ln_f') };
}

export function disposeWeights(w: GPT2Weights<Linear>): void {
  tf.dispose([w.lnF.weight, w.lnF.bias]);
  for (const b of w.blocks) {
    if (!b) continue;
    tf.dispose([b.ln1.weight, b.ln1.bias, b.ln2.weight, b.ln2.bias]);
    for (const l of Object.values(b.linears)) l.dispose();
  }
}

export function blockAt<L extends Linear, V extends tf.Tensor1D>(w: GPT2Weights<L, V>, i: number): Block<L, V> {
  const block = w.blocks[i];
  if (!block) throw new Error(`block ${i} is below this model's first block; it runs on the device`);
  return block;
}

const affine = (n: Normalized, { weight, bias }: LayerNorm) => tf.add(tf.mul(n.xhat, weight), bias) as tf.Tensor2D;

export function layerNorm(x: tf.Tensor2D, ln: LayerNorm, c: GPT2Config): tf.Tensor2D {
  return affine(normalize(x, c.layerNormEpsilon), ln);
}

/**
 * Token + position embeddings: ids and mask [B, T] int32 -> [B, T, d]. `rows` picks rows of a table: tf.gather, or
 * ops.gatherRows where the tables train.
 */
export function embed(
  c: GPT2Config,
  wte: tf.Tensor2D,
  wpe: tf.Tensor2D,
  ids: tf.Tensor2D,
  mask: tf.Tensor2D,
  rows: (table: tf.Tensor2D, ids: tf.Tensor) => tf.Tensor,
): tf.Tensor3D {
  const T = ids.shape[1];
  if (T > c.nPositions) throw new RangeError(`sequence length ${T} exceeds the model's n_positions (${c.nPositions}): truncate the input`);
  return tf.tidy(() => tf.add(rows(wte, ids), rows(wpe, positionIds(mask))) as tf.Tensor3D);
}

/** The batch a block runs on: B rows of T tokens, as [B*T, d]. */
export interface BatchShape {
  config: GPT2Config;
  B: number;
  T: number;
}

/** What a block's backward needs from its forward, per block. */
export interface BlockTape {
  ln1: Normalized;
  ln2: Normalized;
  /** Attention heads [B, H, T, head_dim] and probabilities [B, H, T, T]. */
  q: tf.Tensor4D;
  k: tf.Tensor4D;
  v: tf.Tensor4D;
  p: tf.Tensor4D;
  /** The attention mask's scale (its fill has no gradient). */
  scale: tf.Tensor4D;
  /** The MLP's pre-activation, c_fc's output. */
  h: tf.Tensor2D;
  adapted: Partial<Record<BlockLinear, AdaptedInput>>;
}

/** An adapted linear's input (before dropout), its dropout multiplier, and (keep * x) A. */
export interface AdaptedInput {
  input: tf.Tensor2D;
  keep?: tf.Tensor2D;
  xa: tf.Tensor2D;
}

const heads = (t: tf.Tensor, { config: c, B, T }: BatchShape): tf.Tensor4D => t.reshape([B, T, c.nHead, c.nEmbd / c.nHead]).transpose([0, 2, 1, 3]);

function merge(t: tf.Tensor): tf.Tensor2D {
  const [B, H, T, hd] = t.shape;
  return t.transpose([0, 2, 1, 3]).reshape([B! * T!, H! * hd!]);
}

/**
 * A block on x [B*T, d]. `taped`: no autodiff tape runs (trainForward's step), so each adapted linear keeps x A for
 * blockBackward rather than have it recomputed there; the tape is complete only then.
 */
function forward(
  block: Block<Linear>,
  x: tf.Tensor2D,
  shape: BatchShape,
  attn: AttentionMask,
  adapters: BlockAdapters,
  taped: boolean,
): { y: tf.Tensor2D; tape: BlockTape } {
  const adapted: BlockTape['adapted'] = {};
  const linear = (name: BlockLinear, input: tf.Tensor2D) => {
    const y = block.linears[name].apply(input);
    const ad = adapters[name];
    if (!ad) return y;
    const x = dropout(input, ad.keep);
    let low: tf.Tensor2D;
    if (taped) {
      const xa = tf.matMul<tf.Tensor2D>(x, ad.a);
      adapted[name] = { input, keep: ad.keep, xa };
      low = tf.matMul(xa, ad.b);
    } else low = lowRank(x, ad.a, ad.b);
    return tf.add(y, tf.mul(low, ad.scale)) as tf.Tensor2D;
  };
  const eps = shape.config.layerNormEpsilon;
  const ln1 = normalize(x, eps);
  const [q, k, v] = tf.split(linear('attn.c_attn', affine(ln1, block.ln1)), 3, 1).map((t) => heads(t, shape)) as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
  const p = tf.softmax(tf.add(tf.mul(tf.matMul(q, k, false, true), attn.scale), attn.fill)) as tf.Tensor4D;
  const x2 = tf.add(x, linear('attn.c_proj', merge(tf.matMul(p, v)))) as tf.Tensor2D;
  const ln2 = normalize(x2, eps);
  const h = linear('mlp.c_fc', affine(ln2, block.ln2));
  return { y: tf.add(x2, linear('mlp.c_proj', gelu(h))) as tf.Tensor2D, tape: { ln1, ln2, q, k, v, p, scale: attn.scale, h, adapted } };
}

/** Blocks [from, to) on hidden states [B, T, d], with adapters if given, differentiable by autodiff. */
export function blocksForward(
  w: GPT2Weights<Linear>,
  hidden: tf.Tensor3D,
  mask: tf.Tensor2D,
  from: number,
  to = w.config.nLayer,
  adapters?: Adapters,
): tf.Tensor3D {
  const [B, T, d] = hidden.shape;
  const shape = { config: w.config, B, T };
  const attn = attentionMask(mask, w.config.nHead, d / w.config.nHead);
  let x = hidden.reshape([B * T, d]) as tf.Tensor2D;
  for (let i = from; i < to; i++) x = forward(blockAt(w, i), x, shape, attn, adapters?.(i, B * T) ?? {}, false).y;
  tf.dispose([attn.scale, attn.fill]);
  return x.reshape([B, T, d]);
}

/** A block's output and the tape for blockBackward. */
export const tapedBlockForward = (block: Block<FrozenLinear>, x: tf.Tensor2D, shape: BatchShape, attn: AttentionMask, adapters: BlockAdapters) =>
  forward(block, x, shape, attn, adapters, true);

/** A tape's tensors rebuilt by `f` in one fixed order, so that a list of them maps back onto the same fields. */
function mapTape(t: BlockTape, f: <R extends tf.Tensor>(x: R) => R): BlockTape {
  const norm = (n: Normalized) => ({ xhat: f(n.xhat), rstd: f(n.rstd) });
  const adapted: BlockTape['adapted'] = {};
  for (const name of BLOCK_LINEARS) {
    const a = t.adapted[name];
    if (a) adapted[name] = { input: f(a.input), keep: a.keep && f(a.keep), xa: f(a.xa) };
  }
  return { ln1: norm(t.ln1), ln2: norm(t.ln2), q: f(t.q), k: f(t.k), v: f(t.v), p: f(t.p), scale: f(t.scale), h: f(t.h), adapted };
}

/** The tape as the list tf.customGrad saves (it keeps copies for the backward pass, after the forward let go). */
export function tapeTensors(t: BlockTape): tf.Tensor[] {
  const list: tf.Tensor[] = [];
  mapTape(t, (x) => (list.push(x), x));
  return list;
}

/** The tape over the copies tf.customGrad saved of tapeTensors(t). */
export function savedTape(t: BlockTape, saved: tf.Tensor[]): BlockTape {
  let i = 0;
  return mapTape(t, <R extends tf.Tensor>() => saved[i++] as R);
}

/**
 * The adapters' gradients [dA, dB] by linear from dy, and dx, of a block: autodiff of its forward written out, with
 * LayerNorm weights frozen. Without `needDx` it stops at the lowest adapted linear, as autodiff stops at the lowest
 * trainable op (dx is then undefined). Runs inside the backward pass, on the tape tapedBlockForward kept.
 */
export function blockBackward(block: Block<FrozenLinear>, dy: tf.Tensor2D, tape: BlockTape, shape: BatchShape, adapters: BlockAdapters, needDx: boolean) {
  const grads = new Map<BlockLinear, tf.Tensor2D[]>();
  // Backward meets the linears top down; below the lowest adapted one, only dx would need their gradients.
  const order: BlockLinear[] = ['mlp.c_proj', 'mlp.c_fc', 'attn.c_proj', 'attn.c_attn'];
  const lowest = Math.max(...order.map((name, j) => (adapters[name] ? j : -1)));
  const linear = (name: BlockLinear, dout: tf.Tensor2D): tf.Tensor2D | undefined => {
    const ad = adapters[name];
    const needInput = needDx || order.indexOf(name) < lowest;
    const dx = needInput ? block.linears[name].backward(dout) : undefined;
    if (!ad) return dx;
    const { input, keep, xa } = tape.adapted[name]!;
    const { dxa, da, db } = lowRankBackward(dropout(input, keep), ad.b, xa, tf.mul(dout, ad.scale));
    grads.set(name, [da, db]);
    return dx && (tf.add(dx, dropout(tf.matMul(dxa, tf.transpose(ad.a)), keep)) as tf.Tensor2D);
  };
  const layerNorm = (dout: tf.Tensor2D, ln: LayerNorm, n: Normalized) => normalizeBackward(tf.mul(dout, ln.weight) as tf.Tensor2D, n.xhat, n.rstd);
  // MLP: y = x2 + c_proj(gelu(c_fc(ln2(x2))))
  const dg = linear('mlp.c_proj', dy);
  const dc = dg && linear('mlp.c_fc', geluBackward(tape.h, dg));
  if (!dc) return { grads };
  const dx2: tf.Tensor2D = tf.add(dy, layerNorm(dc, block.ln2, tape.ln2));
  // Attention: x2 = x + c_proj(merge(softmax(q k^T * scale + fill) v))
  const dMerged = linear('attn.c_proj', dx2);
  if (!dMerged) return { grads };
  const { q, k, v, p } = tape;
  const dOut = heads(dMerged, shape);
  const dp = tf.matMul(dOut, v, false, true);
  const dScores = tf.mul(tf.mul(p, tf.sub(dp, tf.sum(tf.mul(dp, p), -1, true))), tape.scale);
  const dqkv = tf.concat<tf.Tensor2D>(
    [tf.matMul(dScores, k), tf.matMul(dScores, q, true), tf.matMul(p, dOut, true)].map((t) => merge(t)),
    1,
  );
  const da = linear('attn.c_attn', dqkv);
  return { dx: da && (tf.add(dx2, layerNorm(da, block.ln1, tape.ln1)) as tf.Tensor2D), grads };
}
