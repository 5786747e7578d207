/**
 * LoRA adapters in the Hugging Face PEFT layout: `adapter_config.json` and `adapter_model.safetensors` with PEFT's
 * key names, so `PeftModel.from_pretrained(base, folder)` loads what the server trained: a classifier
 * (GPT2ForSequenceClassification, LlamaForSequenceClassification: task SEQ_CLS, with the trained head) or a causal LM
 * (LlamaForCausalLM: task CAUSAL_LM, no head).
 * PEFT stores lora_A as nn.Linear(in, r).weight [r, in] and lora_B as nn.Linear(r, out).weight [out, r] for both;
 * fan_in_fan_out says how the base weight is laid out: true for GPT-2's Conv1D [in, out] (its update is
 * (B A)^T * alpha / r), false for Llama's nn.Linear [out, in] (update B A * alpha / r).
 * Here A is kept as [in, r] and B as [r, out], i.e. the transposes of PEFT's tensors.
 */
import { parseSafetensors, serializeSafetensors } from '../tensors/safetensors.ts';
import type { Tensor } from '../tensors/tensor.ts';
import { familyOf, blockLinears, blockPath, linearInOut, paramLayout, type Model, type ModelConfig } from '../model/family.ts';
import { SCORE } from '../model/params.ts';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

export interface AdapterWeights {
  rank: number;
  alpha: number;
  dropout: number;
  /** Block linears by module path ('attn.c_attn', 'self_attn.q_proj'). */
  targets: string[];
  layers: number[];
  /** [in, r] per `h.{layer}.{linear}` / `layers.{layer}.{linear}` */
  a: Map<string, Float32Array>;
  /** [r, out] per the same key */
  b: Map<string, Float32Array>;
  /** The trained classification head [num_labels, n_embd] (PEFT modules_to_save). */
  head?: Float32Array;
}

const HEAD_KEY = `base_model.model.${SCORE}`;

/** PEFT's names for the base model's blocks: `base_model.model.transformer.` + `h.3...` / `base_model.model.model.` + `layers.3...`. */
const peftPrefix = (c: ModelConfig) => `base_model.model.${paramLayout(c).prefix}`;

function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(m.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = m[r * cols + c];
  return t;
}

/**
 * PEFT's target_modules: a list, matched by name suffix and limited to the trained blocks by `layers_to_transform`
 * (PEFT refuses those two with a regex). A linear's leaf name where every block linear of that name is adapted, else
 * its path: 'attn.c_proj' alone, since 'c_proj' would also take GPT-2's mlp.c_proj.
 */
function targetModules(targets: string[], config: ModelConfig): string[] {
  const leaf = (t: string) => t.split('.').at(-1)!;
  const everyOneOf = (name: string) =>
    blockLinears(config)
      .filter((t) => leaf(t) === name)
      .every((t) => targets.includes(t));
  return [...new Set(targets.map((t) => (everyOneOf(leaf(t)) ? leaf(t) : t)))];
}

export function adapterFiles(w: AdapterWeights, config: ModelConfig, baseModel: string): Record<string, Uint8Array> {
  const tensors: Record<string, Tensor> = {};
  const prefix = peftPrefix(config);
  for (const layer of w.layers) {
    for (const linear of w.targets) {
      const key = `${blockPath(config, layer)}.${linear}`;
      const [inp, out] = linearInOut(config, linear);
      tensors[`${prefix}${key}.lora_A.weight`] = { dtype: 'F32', shape: [w.rank, inp], data: transpose(w.a.get(key)!, inp, w.rank) };
      tensors[`${prefix}${key}.lora_B.weight`] = { dtype: 'F32', shape: [out, w.rank], data: transpose(w.b.get(key)!, w.rank, out) };
    }
  }
  if (w.head) tensors[HEAD_KEY] = { dtype: 'F32', shape: [config.numLabels, config.nEmbd], data: w.head };
  const family = familyOf(config);
  const peftConfig = {
    peft_type: 'LORA',
    task_type: w.head ? 'SEQ_CLS' : 'CAUSAL_LM',
    base_model_name_or_path: baseModel,
    r: w.rank,
    lora_alpha: w.alpha,
    lora_dropout: w.dropout,
    target_modules: targetModules(w.targets, config),
    fan_in_fan_out: family.fanInFanOut,
    bias: 'none',
    layers_to_transform: w.layers,
    layers_pattern: family.blockPath(0).split('.')[0],
    modules_to_save: w.head ? ['score'] : null,
    init_lora_weights: true,
    inference_mode: true,
    use_rslora: false,
    use_dora: false,
  };
  return {
    [ADAPTER_CONFIG]: new TextEncoder().encode(JSON.stringify(peftConfig, null, 2) + '\n'),
    [ADAPTER_WEIGHTS]: serializeSafetensors(tensors, { format: 'pt' }),
  };
}

/** Reads a PEFT adapter for this model; errors name the file and the tensor or field. */
export function parseAdapter(files: Record<string, Uint8Array>, config: ModelConfig, folder = 'adapter'): AdapterWeights {
  const cfgFile = `${folder}/${ADAPTER_CONFIG}`;
  const wFile = `${folder}/${ADAPTER_WEIGHTS}`;
  if (!files[ADAPTER_CONFIG]) throw new Error(`${cfgFile}: missing`);
  if (!files[ADAPTER_WEIGHTS]) throw new Error(`${wFile}: missing`);
  let c: Record<string, unknown>;
  try {
    c = JSON.parse(new TextDecoder().decode(files[ADAPTER_CONFIG]));
  } catch (e) {
    throw new Error(`${cfgFile}: not valid JSON (${(e as Error).message})`);
  }
  if (c.peft_type !== 'LORA') throw new Error(`${cfgFile}: peft_type ${JSON.stringify(c.peft_type)} is not "LORA"`);
  const family = familyOf(config);
  if (c.fan_in_fan_out !== family.fanInFanOut)
    throw new Error(`${cfgFile}: fan_in_fan_out must be ${family.fanInFanOut} for ${family.name}'s ${family.fanInFanOut ? 'Conv1D' : 'nn.Linear'} layers`);
  const rank = c.r as number;
  if (!Number.isSafeInteger(rank) || rank < 1) throw new Error(`${cfgFile}: field 'r' must be a positive integer`);
  const { tensors } = parseSafetensors(files[ADAPTER_WEIGHTS], wFile);
  const a = new Map<string, Float32Array>();
  const b = new Map<string, Float32Array>();
  const targets = new Set<string>();
  const linears = blockLinears(config);
  const pattern = new RegExp(
    `^${peftPrefix(config).replaceAll('.', '\\.')}${blockPath(config, 0).split('.')[0]}\\.(\\d+)\\.(${linears.map((l) => l.replace('.', '\\.')).join('|')})\\.lora_([AB])\\.weight$`,
  );
  const layers = new Set<number>();
  let head: Float32Array | undefined;
  for (const [name, t] of tensors) {
    if (name === HEAD_KEY) {
      if (t.shape.join() !== [config.numLabels, config.nEmbd].join())
        throw new Error(`${wFile}: tensor '${name}' has shape ${JSON.stringify(t.shape)}, the model needs [${config.numLabels}, ${config.nEmbd}]`);
      head = t.data as Float32Array;
      continue;
    }
    const m = pattern.exec(name);
    if (!m) throw new Error(`${wFile}: tensor '${name}' is not a ${config.modelType} LoRA weight`);
    const layer = Number(m[1]);
    const linear = m[2]!;
    if (layer >= config.nLayer) throw new Error(`${wFile}: tensor '${name}' is for layer ${layer}; the model has ${config.nLayer}`);
    if (t.dtype !== 'F32') throw new Error(`${wFile}: tensor '${name}' is ${t.dtype}; expected F32`);
    const [inp, out] = linearInOut(config, linear);
    const want = m[3] === 'A' ? [rank, inp] : [out, rank];
    if (t.shape.join() !== want.join()) throw new Error(`${wFile}: tensor '${name}' has shape ${JSON.stringify(t.shape)}, expected ${JSON.stringify(want)}`);
    const key = `${blockPath(config, layer)}.${linear}`;
    if (m[3] === 'A') a.set(key, transpose(t.data as Float32Array, rank, inp));
    else b.set(key, transpose(t.data as Float32Array, out, rank));
    targets.add(linear);
    layers.add(layer);
  }
  for (const key of new Set([...a.keys(), ...b.keys()])) {
    if (!a.has(key) || !b.has(key)) throw new Error(`${wFile}: ${key} has lora_${a.has(key) ? 'A' : 'B'} but not lora_${a.has(key) ? 'B' : 'A'}`);
  }
  return {
    rank,
    alpha: Number(c.lora_alpha ?? rank),
    dropout: Number(c.lora_dropout ?? 0),
    targets: linears.filter((t) => targets.has(t)),
    layers: [...layers].sort((x, y) => x - y),
    a,
    b,
    head,
  };
}

/**
 * The base model with the adapter merged in (W + A B alpha / r, in the family's weight layout) and the trained head:
 * plain weights of the same family.
 */
export function mergeAdapter<M extends Model>(model: M, w: AdapterWeights): M {
  const params = new Map(model.params);
  const scale = w.alpha / w.rank;
  // Conv1D (fan_in_fan_out) keeps W as [in, out]; nn.Linear keeps [out, in].
  const outMajor = !familyOf(model.config).fanInFanOut;
  for (const [key, a] of w.a) {
    const linear = key.split('.').slice(2).join('.');
    const [inp, out] = linearInOut(model.config, linear);
    const merged = Float32Array.from(params.get(`${key}.weight`)!);
    const bm = w.b.get(key)!;
    for (let i = 0; i < inp; i++) {
      for (let o = 0; o < out; o++) {
        let s = 0;
        for (let r = 0; r < w.rank; r++) s += a[i * w.rank + r]! * bm[r * out + o]!;
        merged[outMajor ? o * inp + i : i * out + o] += s * scale;
      }
    }
    params.set(`${key}.weight`, merged);
  }
  if (w.head) params.set(SCORE, w.head);
  return { ...model, params };
}
