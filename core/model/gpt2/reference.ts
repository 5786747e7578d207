/**
 * The golden reference: GPT-2's forward pass written plainly in float64, one loop at a time.
 * Slow on purpose and kept readable; every faster implementation (TF.js, ONNX) is tested against it.
 */
import { lastTokenIndex, MASKED_SCORE, positionIds } from '../masking.ts';
import { param, type GPT2Model } from './weights.ts';

/** Rows of `rows` x `cols`, float64. */
type Matrix = Float64Array;

function layerNorm(x: Matrix, rows: number, d: number, w: Float32Array, b: Float32Array, eps: number): Matrix {
  const out = new Float64Array(rows * d);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let i = 0; i < d; i++) mean += x[r * d + i];
    mean /= d;
    let variance = 0;
    for (let i = 0; i < d; i++) variance += (x[r * d + i] - mean) ** 2;
    variance /= d;
    const inv = 1 / Math.sqrt(variance + eps);
    for (let i = 0; i < d; i++) out[r * d + i] = (x[r * d + i] - mean) * inv * w[i] + b[i];
  }
  return out;
}

/** y = x @ W + b with W stored [in, out] (Conv1D). */
function linear(x: Matrix, rows: number, inp: number, out: number, w: Float32Array, b: Float32Array): Matrix {
  const y = new Float64Array(rows * out);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < out; o++) {
      let s = b[o];
      for (let i = 0; i < inp; i++) s += x[r * inp + i] * w[i * out + o];
      y[r * out + o] = s;
    }
  }
  return y;
}

/** GPT-2's "gelu_new": the tanh approximation. */
function gelu(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
}

function attention(model: GPT2Model, layer: number, x: Matrix, mask: ArrayLike<number>, B: number, T: number): Matrix {
  const { nEmbd: d, nHead: H } = model.config;
  const hd = d / H;
  const p = (name: string) => param(model, `h.${layer}.attn.${name}`);
  const qkv = linear(x, B * T, d, 3 * d, p('c_attn.weight'), p('c_attn.bias'));
  const y = new Float64Array(B * T * d);
  const scores = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < T; i++) {
        const q = (b * T + i) * 3 * d + h * hd;
        for (let j = 0; j < T; j++) {
          const k = (b * T + j) * 3 * d + d + h * hd;
          let s = 0;
          for (let c = 0; c < hd; c++) s += qkv[q + c] * qkv[k + c];
          scores[j] = j <= i && mask[b * T + j] ? s / Math.sqrt(hd) : MASKED_SCORE;
        }
        const max = Math.max(...scores);
        let sum = 0;
        for (let j = 0; j < T; j++) sum += scores[j] = Math.exp(scores[j] - max);
        for (let c = 0; c < hd; c++) {
          let acc = 0;
          for (let j = 0; j < T; j++) acc += (scores[j] / sum) * qkv[(b * T + j) * 3 * d + 2 * d + h * hd + c];
          y[(b * T + i) * d + h * hd + c] = acc;
        }
      }
    }
  }
  return linear(y, B * T, d, d, p('c_proj.weight'), p('c_proj.bias'));
}

function mlp(model: GPT2Model, layer: number, x: Matrix, rows: number): Matrix {
  const { nEmbd: d, nInner: inner } = model.config;
  const p = (name: string) => param(model, `h.${layer}.mlp.${name}`);
  const hidden = linear(x, rows, d, inner, p('c_fc.weight'), p('c_fc.bias')).map(gelu);
  return linear(hidden, rows, inner, d, p('c_proj.weight'), p('c_proj.bias'));
}

function addInPlace(x: Matrix, y: Matrix): void {
  for (let i = 0; i < x.length; i++) x[i] += y[i];
}

/** Hidden states [B, T, d] after blocks [0, upTo): the device prefix's output at cut `upTo`. */
export function referenceHidden(
  model: GPT2Model,
  ids: ArrayLike<number>,
  mask: ArrayLike<number>,
  B: number,
  T: number,
  upTo = model.config.nLayer,
): Float64Array {
  const { nEmbd: d, layerNormEpsilon: eps } = model.config;
  const wte = param(model, 'wte.weight');
  const wpe = param(model, 'wpe.weight');
  const pos = positionIds(mask, B, T);
  const x = new Float64Array(B * T * d);
  for (let r = 0; r < B * T; r++) {
    for (let i = 0; i < d; i++) x[r * d + i] = wte[ids[r] * d + i] + wpe[pos[r] * d + i];
  }
  for (let layer = 0; layer < upTo; layer++) {
    const p = (name: string) => param(model, `h.${layer}.${name}`);
    addInPlace(x, attention(model, layer, layerNorm(x, B * T, d, p('ln_1.weight'), p('ln_1.bias'), eps), mask, B, T));
    addInPlace(x, mlp(model, layer, layerNorm(x, B * T, d, p('ln_2.weight'), p('ln_2.bias'), eps), B * T));
  }
  return x;
}

/** Classification logits [B, num_labels] from the full model, pooled at each row's last real token. */
export function referenceClassify(model: GPT2Model, ids: ArrayLike<number>, mask: ArrayLike<number>, B: number, T: number): Float64Array {
  const { nEmbd: d, numLabels, layerNormEpsilon: eps } = model.config;
  const x = referenceHidden(model, ids, mask, B, T);
  const last = lastTokenIndex(mask, B, T);
  const pooled = new Float64Array(B * d);
  for (let b = 0; b < B; b++) pooled.set(x.subarray((b * T + last[b]) * d, (b * T + last[b] + 1) * d), b * d);
  const normed = layerNorm(pooled, B, d, param(model, 'ln_f.weight'), param(model, 'ln_f.bias'), eps);
  const score = param(model, 'score.weight'); // [num_labels, d]
  const logits = new Float64Array(B * numLabels);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < numLabels; c++) {
      let s = 0;
      for (let i = 0; i < d; i++) s += normed[b * d + i] * score[c * d + i];
      logits[b * numLabels + c] = s;
    }
  }
  return logits;
}

/** Next-token logits [B, T, vocab] from the tied LM head. */
export function referenceLmLogits(model: GPT2Model, ids: ArrayLike<number>, mask: ArrayLike<number>, B: number, T: number): Float64Array {
  const { nEmbd: d, vocabSize: V, layerNormEpsilon: eps } = model.config;
  const normed = layerNorm(referenceHidden(model, ids, mask, B, T), B * T, d, param(model, 'ln_f.weight'), param(model, 'ln_f.bias'), eps);
  const wte = param(model, 'wte.weight');
  const logits = new Float64Array(B * T * V);
  for (let r = 0; r < B * T; r++) {
    for (let v = 0; v < V; v++) {
      let s = 0;
      for (let i = 0; i < d; i++) s += normed[r * d + i] * wte[v * d + i];
      logits[r * V + v] = s;
    }
  }
  return logits;
}
