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
import { toFloat32, type Tensor } from '../tensors/tensor.ts';
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
  /** Each module's scale where it is not alpha / rank (an adapter read with rank_pattern, alpha_pattern or rsLoRA). */
  scales?: Map<string, number>;
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

/**
 * LoraConfig's fields that change what an adapter computes beyond plain LoRA, with the value that means "not used":
 * an adapter that uses any is refused by name rather than merged wrongly.
 */
const UNSUPPORTED: Array<[field: string, unused: (v: unknown) => boolean, what: string]> = [
  ['use_dora', (v) => v === undefined || v === false, 'DoRA (weight-decomposed LoRA)'],
  ['bias', (v) => v === undefined || v === 'none', 'trained biases'],
  ['lora_bias', (v) => v === undefined || v === false, 'a bias on lora_B'],
  ['layer_replication', (v) => v == null, 'replicated layers'],
  ['trainable_token_indices', (v) => v == null, 'trained token embeddings'],
  ['target_parameters', (v) => v == null || (Array.isArray(v) && v.length === 0), 'LoRA on parameters rather than modules'],
  ['use_qalora', (v) => v === undefined || v === false, 'QA-LoRA'],
  ['alora_invocation_tokens', (v) => v == null, 'activated LoRA'],
  ['megatron_config', (v) => v == null, 'Megatron parallel layers'],
];

/** PEFT's get_pattern_key: the first pattern that matches the module's name as a whole or as its dotted suffix. */
function patternFor(patterns: Record<string, number>, module: string): number | undefined {
  const key = Object.keys(patterns).find((k) => new RegExp(`^(.*\\.)?(${k})$`).test(module));
  return key === undefined ? undefined : patterns[key];
}

/**
 * Reads a PEFT LoRA adapter for this model as PEFT itself reads it: LoraConfig's defaults (r 8, lora_alpha 8), each
 * module's rank and alpha from rank_pattern and alpha_pattern, its scale alpha / r (alpha / sqrt(r) with use_rslora),
 * tensors in F32, F16 or BF16. What it cannot merge exactly is refused by name. Errors name the file and the tensor or
 * field.
 */
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
  if ((c.fan_in_fan_out ?? false) !== family.fanInFanOut)
    throw new Error(`${cfgFile}: fan_in_fan_out must be ${family.fanInFanOut} for ${family.name}'s ${family.fanInFanOut ? 'Conv1D' : 'nn.Linear'} layers`);
  for (const [field, unused, what] of UNSUPPORTED)
    if (!unused(c[field])) throw new Error(`${cfgFile}: ${field} ${JSON.stringify(c[field])} asks for ${what}, which this version cannot merge`);
  const modulesToSave = c.modules_to_save ?? null;
  if (modulesToSave !== null && JSON.stringify(modulesToSave) !== '["score"]')
    throw new Error(`${cfgFile}: modules_to_save ${JSON.stringify(modulesToSave)}: only the classification head ["score"] is supported`);
  const positive = (field: string, v: unknown, fallback: number): number => {
    const n = v ?? fallback;
    if (typeof n !== 'number' || !(n > 0)) throw new Error(`${cfgFile}: field '${field}' must be a positive number, got ${JSON.stringify(v)}`);
    return n;
  };
  const patterns = (field: string): Record<string, number> => {
    const p = c[field] ?? {};
    if (typeof p !== 'object' || p === null || Array.isArray(p)) throw new Error(`${cfgFile}: field '${field}' must map module patterns to numbers`);
    for (const [k, v] of Object.entries(p)) positive(`${field}.${k}`, v, 0);
    return p as Record<string, number>;
  };
  // LoraConfig's defaults, not ours: an adapter that leaves them out was trained with them.
  const rank = positive('r', c.r, 8);
  if (!Number.isSafeInteger(rank)) throw new Error(`${cfgFile}: field 'r' must be a positive integer`);
  const alpha = positive('lora_alpha', c.lora_alpha, 8);
  const rslora = c.use_rslora === true;
  const rankPattern = patterns('rank_pattern');
  const alphaPattern = patterns('alpha_pattern');
  const { tensors } = parseSafetensors(files[ADAPTER_WEIGHTS], wFile);
  const floats = (name: string, t: Tensor): Float32Array => {
    if (t.dtype !== 'F32' && t.dtype !== 'F16' && t.dtype !== 'BF16') throw new Error(`${wFile}: tensor '${name}' is ${t.dtype}; expected F32, F16 or BF16`);
    return toFloat32(t);
  };
  const a = new Map<string, Float32Array>();
  const b = new Map<string, Float32Array>();
  const scales = new Map<string, number>();
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
      head = floats(name, t);
      continue;
    }
    const m = pattern.exec(name);
    if (!m) throw new Error(`${wFile}: tensor '${name}' is not a ${config.modelType} LoRA weight`);
    const layer = Number(m[1]);
    const linear = m[2]!;
    if (layer >= config.nLayer) throw new Error(`${wFile}: tensor '${name}' is for layer ${layer}; the model has ${config.nLayer}`);
    const key = `${blockPath(config, layer)}.${linear}`;
    // The module's name as PEFT matches patterns against it: its path in the base model.
    const module = `${paramLayout(config).prefix}${key}`;
    const r = patternFor(rankPattern, module) ?? rank;
    const moduleAlpha = patternFor(alphaPattern, module) ?? alpha;
    const [inp, out] = linearInOut(config, linear);
    const want = m[3] === 'A' ? [r, inp] : [out, r];
    if (t.shape.join() !== want.join()) throw new Error(`${wFile}: tensor '${name}' has shape ${JSON.stringify(t.shape)}, expected ${JSON.stringify(want)}`);
    if (m[3] === 'A') a.set(key, transpose(floats(name, t), r, inp));
    else b.set(key, transpose(floats(name, t), out, r));
    scales.set(key, rslora ? moduleAlpha / Math.sqrt(r) : moduleAlpha / r);
    targets.add(linear);
    layers.add(layer);
  }
  for (const key of new Set([...a.keys(), ...b.keys()])) {
    if (!a.has(key) || !b.has(key)) throw new Error(`${wFile}: ${key} has lora_${a.has(key) ? 'A' : 'B'} but not lora_${a.has(key) ? 'B' : 'A'}`);
  }
  return {
    rank,
    alpha,
    scales,
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
  // Conv1D (fan_in_fan_out) keeps W as [in, out]; nn.Linear keeps [out, in].
  const outMajor = !familyOf(model.config).fanInFanOut;
  for (const [key, a] of w.a) {
    const linear = key.split('.').slice(2).join('.');
    const [inp, out] = linearInOut(model.config, linear);
    // Each module's own rank and scale where the adapter has them (PEFT's rank_pattern, alpha_pattern, rsLoRA).
    const rank = a.length / inp;
    const scale = w.scales?.get(key) ?? w.alpha / w.rank;
    const merged = Float32Array.from(params.get(`${key}.weight`)!);
    const bm = w.b.get(key)!;
    for (let i = 0; i < inp; i++) {
      for (let o = 0; o < out; o++) {
        let s = 0;
        for (let r = 0; r < rank; r++) s += a[i * rank + r]! * bm[r * out + o]!;
        merged[outMajor ? o * inp + i : i * out + o] += s * scale;
      }
    }
    params.set(`${key}.weight`, merged);
  }
  if (w.head) params.set(SCORE, w.head);
  return { ...model, params };
}
