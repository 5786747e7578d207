/**
 * The golden reference: Llama's forward pass (LlamaForCausalLM) written plainly in float64, one loop at a time.
 * RMSNorm, rotary embeddings (with llama3 rope_scaling), grouped-query attention, SwiGLU MLP, no biases. Slow on
 * purpose and kept readable; every faster implementation (TF.js, ONNX) is tested against it. Padding conventions:
 * ../masking.ts (positions count real tokens only, hidden scores replaced by MASKED_SCORE).
 */
import { MASKED_SCORE, positionIds } from '../masking.ts';
import { requireParam } from '../params.ts';
import type { LlamaConfig } from './config.ts';
import { LM_HEAD, llamaLinearShape, type LlamaLinear, type LlamaModel } from './weights.ts';

type Matrix = Float64Array;

/**
 * Rotary inverse frequencies [head_dim / 2]: theta^(-2i/d), then, with llama3 scaling, wavelengths longer than
 * original_max / low_freq_factor slowed by `factor`, those shorter than original_max / high_freq_factor kept, and the
 * band between interpolated (transformers' _compute_llama3_parameters).
 */
export function ropeInvFreq(c: LlamaConfig): Float64Array {
  const half = c.headDim / 2;
  const inv = Float64Array.from({ length: half }, (_, i) => 1 / c.ropeTheta ** ((2 * i) / c.headDim));
  const s = c.ropeScaling;
  if (!s) return inv;
  const lowWavelen = s.originalMaxPositions / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositions / s.highFreqFactor;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / s.factor;
    const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}

/** x rotated in place by position `pos`, as HF's rotate_half: pairs (i, i + d/2). */
function rotate(x: Matrix, offset: number, headDim: number, pos: number, invFreq: Float64Array): void {
  const half = headDim / 2;
  for (let i = 0; i < half; i++) {
    const cos = Math.cos(pos * invFreq[i]);
    const sin = Math.sin(pos * invFreq[i]);
    const a = x[offset + i];
    const b = x[offset + half + i];
    x[offset + i] = a * cos - b * sin;
    x[offset + half + i] = b * cos + a * sin;
  }
}

function rmsNorm(x: Matrix, rows: number, d: number, w: Float32Array, eps: number): Matrix {
  const out = new Float64Array(rows * d);
  for (let r = 0; r < rows; r++) {
    let ms = 0;
    for (let i = 0; i < d; i++) ms += x[r * d + i] ** 2;
    const inv = 1 / Math.sqrt(ms / d + eps);
    for (let i = 0; i < d; i++) out[r * d + i] = x[r * d + i] * inv * w[i];
  }
  return out;
}

/** y = x @ W^T with W in nn.Linear's layout [out, in]. */
function linear(x: Matrix, rows: number, w: Float32Array, out: number, inp: number): Matrix {
  const y = new Float64Array(rows * out);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < out; o++) {
      let s = 0;
      for (let i = 0; i < inp; i++) s += x[r * inp + i] * w[o * inp + i];
      y[r * out + o] = s;
    }
  }
  return y;
}

function project(model: LlamaModel, layer: number, name: LlamaLinear, x: Matrix, rows: number): Matrix {
  const [out, inp] = llamaLinearShape(model.config, name);
  return linear(x, rows, requireParam(model.params, `layers.${layer}.${name}.weight`), out, inp);
}

function attention(model: LlamaModel, layer: number, x: Matrix, pos: Int32Array, mask: ArrayLike<number>, B: number, T: number): Matrix {
  const c = model.config;
  const { nHead: H, nKvHead: KV, headDim: hd } = c;
  const q = project(model, layer, 'self_attn.q_proj', x, B * T);
  const k = project(model, layer, 'self_attn.k_proj', x, B * T);
  const v = project(model, layer, 'self_attn.v_proj', x, B * T);
  const invFreq = ropeInvFreq(c);
  for (let r = 0; r < B * T; r++) {
    for (let h = 0; h < H; h++) rotate(q, (r * H + h) * hd, hd, pos[r], invFreq);
    for (let h = 0; h < KV; h++) rotate(k, (r * KV + h) * hd, hd, pos[r], invFreq);
  }
  const y = new Float64Array(B * T * H * hd);
  const scores = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kvh = Math.floor(h / (H / KV)); // the key/value head this query head shares
      for (let i = 0; i < T; i++) {
        const qo = ((b * T + i) * H + h) * hd;
        for (let j = 0; j < T; j++) {
          const ko = ((b * T + j) * KV + kvh) * hd;
          let s = 0;
          for (let e = 0; e < hd; e++) s += q[qo + e] * k[ko + e];
          scores[j] = j <= i && mask[b * T + j] ? s / Math.sqrt(hd) : MASKED_SCORE;
        }
        const max = Math.max(...scores);
        let sum = 0;
        for (let j = 0; j < T; j++) sum += scores[j] = Math.exp(scores[j] - max);
        for (let e = 0; e < hd; e++) {
          let acc = 0;
          for (let j = 0; j < T; j++) acc += (scores[j] / sum) * v[((b * T + j) * KV + kvh) * hd + e];
          y[qo + e] = acc;
        }
      }
    }
  }
  return project(model, layer, 'self_attn.o_proj', y, B * T);
}

const silu = (x: number) => x / (1 + Math.exp(-x));

function mlp(model: LlamaModel, layer: number, x: Matrix, rows: number): Matrix {
  const gate = project(model, layer, 'mlp.gate_proj', x, rows);
  const up = project(model, layer, 'mlp.up_proj', x, rows);
  return project(
    model,
    layer,
    'mlp.down_proj',
    gate.map((g, i) => silu(g) * up[i]),
    rows,
  );
}

function addInPlace(x: Matrix, y: Matrix): void {
  for (let i = 0; i < x.length; i++) x[i] += y[i];
}

/** Hidden states [B, T, d] after blocks [0, upTo): the device prefix's output at cut `upTo`. */
export function llamaReferenceHidden(
  model: LlamaModel,
  ids: ArrayLike<number>,
  mask: ArrayLike<number>,
  B: number,
  T: number,
  upTo = model.config.nLayer,
): Float64Array {
  const { nEmbd: d, rmsNormEps: eps } = model.config;
  const table = requireParam(model.params, 'embed_tokens.weight');
  const pos = positionIds(mask, B, T);
  const x = new Float64Array(B * T * d);
  for (let r = 0; r < B * T; r++) for (let i = 0; i < d; i++) x[r * d + i] = table[ids[r] * d + i];
  for (let layer = 0; layer < upTo; layer++) {
    const w = (name: string) => requireParam(model.params, `layers.${layer}.${name}.weight`);
    addInPlace(x, attention(model, layer, rmsNorm(x, B * T, d, w('input_layernorm'), eps), pos, mask, B, T));
    addInPlace(x, mlp(model, layer, rmsNorm(x, B * T, d, w('post_attention_layernorm'), eps), B * T));
  }
  return x;
}

/** The LM head's weight [vocab, d]: the token table when tied. */
export function lmHeadWeight(model: LlamaModel): Float32Array {
  return requireParam(model.params, model.config.tieWordEmbeddings ? 'embed_tokens.weight' : LM_HEAD);
}

/** Next-token logits [B, T, vocab] from final hidden states [B, T, d] (the final norm, then the LM head). */
export function llamaReferenceLogits(model: LlamaModel, hidden: Float64Array, rows: number): Float64Array {
  const { nEmbd: d, vocabSize: V, rmsNormEps: eps } = model.config;
  return linear(rmsNorm(hidden, rows, d, requireParam(model.params, 'norm.weight'), eps), rows, lmHeadWeight(model), V, d);
}
