/**
 * Parameters of any family under their Hugging Face names, read from and written to safetensors tensors: the checks
 * every family's loader needs (unexpected, misshapen, non-float, duplicate or missing tensors), named by file and tensor.
 */
import { SafetensorsError } from '../tensors/safetensors.ts';
import type { DType, TensorData } from '../tensors/dtype.ts';
import { toFloat32, type Tensor } from '../tensors/tensor.ts';

export type Params = Map<string, Float32Array>;

/** The sequence-classification head of every family (`*ForSequenceClassification`), a Linear without bias: [num_labels, n_embd]. */
export const SCORE = 'score.weight';

/** How a family's parameters sit in a checkpoint. */
export interface ParamLayout {
  /** e.g. "GPT-2", in errors. */
  family: string;
  /** Every parameter's name (without `prefix`) and shape, in Hugging Face order. */
  shapes: Map<string, number[]>;
  /** The base model's prefix in checkpoints of its task models (`transformer.`, `model.`); optional when reading. */
  prefix: string;
  /** Names kept without the prefix (heads that sit beside the base model). */
  unprefixed: ReadonlySet<string>;
  /** Parameters a checkpoint may lack (a head it was not trained with). */
  optional: ReadonlySet<string>;
  /** Tensors that carry no parameters of ours (buffers, a tied head), after the prefix is removed. */
  ignored: RegExp;
}

/** A checkpoint's tensor: its dtype and shape from the header, its data read when asked (a byte range of a file). */
export interface StoredTensor {
  dtype: DType;
  shape: number[];
  read(): Promise<TensorData>;
}

/**
 * The family's parameters from a checkpoint's tensors, as float32: every name, shape and dtype is checked first, then
 * each tensor is read and converted in turn, so a checkpoint in 16-bit floats is never held twice over.
 */
export async function paramsFromTensors(layout: ParamLayout, tensors: Map<string, StoredTensor>, file: string): Promise<Params> {
  const wanted = new Map<string, [string, StoredTensor]>();
  for (const [rawName, tensor] of tensors) {
    const name = rawName.startsWith(layout.prefix) ? rawName.slice(layout.prefix.length) : rawName;
    if (layout.ignored.test(name)) continue;
    const shape = layout.shapes.get(name);
    if (!shape) throw new SafetensorsError(file, `unexpected tensor: not a ${layout.family} parameter`, rawName);
    if (shape.length !== tensor.shape.length || shape.some((d, i) => d !== tensor.shape[i])) {
      throw new SafetensorsError(file, `shape ${JSON.stringify(tensor.shape)} does not match ${JSON.stringify(shape)} expected from config.json`, rawName);
    }
    if (!['F32', 'F16', 'BF16', 'F64'].includes(tensor.dtype)) throw new SafetensorsError(file, `dtype ${tensor.dtype} is not a floating-point type`, rawName);
    if (wanted.has(name)) throw new SafetensorsError(file, `stored twice (with and without the ${layout.prefix} prefix)`, rawName);
    wanted.set(name, [rawName, tensor]);
  }
  for (const name of layout.shapes.keys()) {
    if (!wanted.has(name) && !layout.optional.has(name)) throw new SafetensorsError(file, 'missing', name);
  }
  const params: Params = new Map();
  for (const [name, [, t]] of wanted) params.set(name, toFloat32({ dtype: t.dtype, shape: t.shape, data: await t.read() }));
  return params;
}

/** Parameters as float32 tensors under the names the family's task model saves. */
export function paramsToTensors(layout: ParamLayout, params: Params): Map<string, Tensor> {
  const tensors = new Map<string, Tensor>();
  for (const [name, shape] of layout.shapes) {
    const data = params.get(name);
    if (data) tensors.set(layout.unprefixed.has(name) ? name : `${layout.prefix}${name}`, { dtype: 'F32', shape, data });
  }
  return tensors;
}

/** The named parameter; `score.weight` is the classification head, which checkpoints of LM models lack. */
export function requireParam(params: Params, name: string): Float32Array {
  const p = params.get(name);
  if (!p) throw new Error(name === SCORE ? `the model has no classification head (${SCORE}); initialise one first` : `missing parameter ${name}`);
  return p;
}
