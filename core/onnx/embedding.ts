/**
 * The token-embedding table kept outside the ONNX session (prefix graphs exported with tokenEmbedding 'input'):
 * the device looks its tokens' rows up itself and feeds `inputs_embeds`. Stored as safetensors, int8 with a
 * per-row scale or float32, and read back by name.
 */
import type { Tensor } from '../tensors/tensor.ts';
import { param, type GPT2Model } from '../model/weights.ts';
import { quantizeInt8 } from './quantize.ts';
import type { PrefixWeights } from './prefix.ts';

export interface TokenTable {
  vocabSize: number;
  nEmbd: number;
  rows: Float32Array | Int8Array;
  /** Per-row scales of int8 rows. */
  scales?: Float32Array;
}

export function tokenTable(model: GPT2Model, weights: PrefixWeights): TokenTable {
  const { vocabSize, nEmbd } = model.config;
  const wte = param(model, 'wte.weight');
  if (weights === 'fp32') return { vocabSize, nEmbd, rows: wte };
  const q = quantizeInt8(wte, vocabSize, nEmbd, 'row');
  return { vocabSize, nEmbd, rows: q.values, scales: q.scales };
}

/** Rows of `ids` ([B, T], any integer array) as a float32 [B, T, d] array. */
export function lookupTokens(table: TokenTable, ids: ArrayLike<number | bigint>): Float32Array {
  const { nEmbd: d, vocabSize, rows, scales } = table;
  const out = new Float32Array(ids.length * d);
  for (let r = 0; r < ids.length; r++) {
    const id = Number(ids[r]);
    if (!(id >= 0 && id < vocabSize)) throw new RangeError(`input_ids[${r}] = ${id} is outside the vocabulary [0, ${vocabSize})`);
    const scale = scales ? scales[id] : 1;
    for (let i = 0; i < d; i++) out[r * d + i] = rows[id * d + i] * scale;
  }
  return out;
}

export function tokenTableTensors(t: TokenTable): Record<string, Tensor> {
  const shape = [t.vocabSize, t.nEmbd];
  if (!t.scales) return { 'wte.weight': { dtype: 'F32', shape, data: t.rows } };
  return {
    'wte.weight_int8': { dtype: 'I8', shape, data: t.rows },
    'wte.weight_scale': { dtype: 'F32', shape: [t.vocabSize], data: t.scales },
  };
}

export function tokenTableFromTensors(tensors: Map<string, Tensor>, file = 'token table'): TokenTable {
  const fp32 = tensors.get('wte.weight');
  const int8 = tensors.get('wte.weight_int8');
  const table = fp32 ?? int8;
  if (!table || table.shape.length !== 2) throw new Error(`${file}: needs 'wte.weight' (F32) or 'wte.weight_int8' (I8) of shape [vocab, d]`);
  const [vocabSize, nEmbd] = table.shape;
  if (fp32) return { vocabSize, nEmbd, rows: fp32.data as Float32Array };
  const scales = tensors.get('wte.weight_scale');
  if (!scales || scales.shape[0] !== vocabSize) throw new Error(`${file}: tensor 'wte.weight_scale' must hold ${vocabSize} per-row scales`);
  return { vocabSize, nEmbd, rows: int8!.data as Int8Array, scales: scales.data as Float32Array };
}
