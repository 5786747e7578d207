import { describe, expect, it } from 'vitest';
import { gpt2Config } from '../model/gpt2/config.ts';
import { llamaConfig } from '../model/llama/config.ts';
import { blockPath, linearInOut, type ModelConfig } from '../model/family.ts';
import { parseSafetensors, serializeSafetensors } from '../tensors/safetensors.ts';
import { readFileSync } from 'node:fs';
import { makeModel } from '../model/family.ts';
import { fromFloat32 } from '../tensors/tensor.ts';
import { maxAbsDiff } from '../../tests/fixtures.ts';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, adapterFiles, mergeAdapter, parseAdapter, type AdapterWeights } from './adapter.ts';

type PeftJson = Record<string, unknown>;

/** The fields PeftConfig and LoraConfig declare (peft/config.py, peft/tuners/lora/config.py). */
const LORA_FIELDS = new Set([
  'peft_type',
  'task_type',
  'base_model_name_or_path',
  'revision',
  'inference_mode',
  'auto_mapping',
  'r',
  'target_modules',
  'exclude_modules',
  'lora_alpha',
  'lora_dropout',
  'fan_in_fan_out',
  'bias',
  'use_rslora',
  'modules_to_save',
  'init_lora_weights',
  'layers_to_transform',
  'layers_pattern',
  'rank_pattern',
  'alpha_pattern',
  'megatron_config',
  'megatron_core',
  'loftq_config',
  'use_dora',
  'layer_replication',
]);

/** Python's truthiness for the JSON values these fields take. */
const truthy = (v: unknown) => v !== null && v !== undefined && v !== 0 && v !== '' && !(Array.isArray(v) && v.length === 0);

/** What LoraConfig(**config) raises, as its __post_init__ checks target_modules, layers_to_transform and layers_pattern. */
function peftRefusal(c: PeftJson): string | undefined {
  const unknown = Object.keys(c).filter((k) => !LORA_FIELDS.has(k));
  if (unknown.length) return `unknown LoraConfig fields ${unknown.join(', ')}`;
  const regex = typeof c.target_modules === 'string';
  if (regex && c.layers_to_transform != null) return '`layers_to_transform` cannot be used when `target_modules` is a str.';
  if (regex && c.layers_pattern != null) return '`layers_pattern` cannot be used when `target_modules` is a str.';
  if (truthy(c.layers_pattern) && !truthy(c.layers_to_transform)) return 'When `layers_pattern` is specified, `layers_to_transform` must also be specified.';
  return undefined;
}

/** PEFT's check_target_module_exists (peft/tuners/tuners_utils.py) for a module name of the base model. */
function peftTakes(c: PeftJson, key: string): boolean {
  if (typeof c.target_modules === 'string') return new RegExp(`^(?:${c.target_modules})$`).test(key);
  const targets = c.target_modules as string[];
  if (targets.includes(key)) return true;
  if (!targets.some((t) => key.endsWith(`.${t}`))) return false;
  const layers = c.layers_to_transform as number[] | number | null;
  if (!truthy(layers) && layers !== 0) return true;
  const patterns = truthy(c.layers_pattern) ? [c.layers_pattern as string | string[]].flat() : ['[^.]*'];
  for (const pattern of patterns) {
    const m = new RegExp(`^.*\\.${pattern}\\.(\\d+)\\.`).exec(key);
    if (m) return Array.isArray(layers) ? layers.includes(Number(m[1])) : layers === Number(m[1]);
  }
  return false;
}

/** named_modules() of transformers' GPT2ForSequenceClassification and LlamaForCausalLM, as PEFT walks them. */
const GPT2_LINEARS = ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'];
const LLAMA_LINEARS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];
function moduleNames(c: ModelConfig): string[] {
  const layers = Array.from({ length: c.nLayer }, (_, i) => i);
  if (c.modelType === 'llama') {
    const block = ['', '.self_attn', '.mlp', '.mlp.act_fn', '.input_layernorm', '.post_attention_layernorm', ...LLAMA_LINEARS.map((l) => `.${l}`)];
    return [
      'model',
      'model.embed_tokens',
      'model.layers',
      ...layers.flatMap((i) => block.map((m) => `model.layers.${i}${m}`)),
      'model.norm',
      'model.rotary_emb',
      'lm_head',
    ];
  }
  const block = [
    '',
    '.ln_1',
    '.attn',
    '.attn.attn_dropout',
    '.attn.resid_dropout',
    '.ln_2',
    '.mlp',
    '.mlp.act',
    '.mlp.dropout',
    ...GPT2_LINEARS.map((l) => `.${l}`),
  ];
  return [
    'transformer',
    'transformer.wte',
    'transformer.wpe',
    'transformer.drop',
    'transformer.h',
    ...layers.flatMap((i) => block.map((m) => `transformer.h.${i}${m}`)),
    'transformer.ln_f',
    'score',
  ];
}

const nonEmptySubsets = <T>(xs: T[]): T[][] => Array.from({ length: 2 ** xs.length - 1 }, (_, m) => xs.filter((_, i) => ((m + 1) >> i) & 1));

function adapter(c: ModelConfig, targets: string[], layers: number[]): AdapterWeights {
  const rank = 2;
  const a = new Map<string, Float32Array>();
  const b = new Map<string, Float32Array>();
  for (const layer of layers) {
    for (const t of targets) {
      const [inp, out] = linearInOut(c, t);
      a.set(`${blockPath(c, layer)}.${t}`, new Float32Array(inp * rank).fill(0.5));
      b.set(`${blockPath(c, layer)}.${t}`, new Float32Array(rank * out).fill(0.25));
    }
  }
  return { rank, alpha: 4, dropout: 0, targets, layers, a, b };
}

const GPT2 = gpt2Config({ nLayer: 12, nEmbd: 8, nHead: 2 });
const LLAMA = llamaConfig({ nLayer: 12, nEmbd: 16, nHead: 2, nKvHead: 1, headDim: 8, nInner: 24 });
// Suffixes [k, 12) as the server trains them; 1 and 10 to catch h.1 taking h.10 (or the reverse).
const SUFFIXES = [0, 1, 10].map((k) => Array.from({ length: 12 - k }, (_, i) => k + i));

describe('PEFT adapter_config.json', () => {
  it('the checker refuses what LoraConfig refuses: a regex target_modules with layers_to_transform or layers_pattern', () => {
    expect(peftRefusal({ target_modules: '.*\\.(attn\\.c_attn|mlp\\.c_proj)', layers_to_transform: [2, 3], layers_pattern: 'h' })).toMatch(
      /layers_to_transform/,
    );
    expect(peftRefusal({ target_modules: '.*\\.c_attn', layers_pattern: 'h' })).toMatch(/layers_pattern/);
    expect(peftRefusal({ target_modules: ['c_attn'], layers_to_transform: [], layers_pattern: 'h' })).toMatch(/must also be specified/);
    expect(peftRefusal({ target_modules: ['c_attn'], layers_to_transform: [2], layers_pattern: 'h', lora_rank: 4 })).toMatch(/lora_rank/);
    expect(peftRefusal({ target_modules: ['c_attn'], layers_to_transform: [2], layers_pattern: 'h' })).toBeUndefined();
  });

  for (const [family, c, linears] of [
    ['GPT-2', GPT2, GPT2_LINEARS],
    ['Llama', LLAMA, LLAMA_LINEARS],
  ] as const) {
    it(`${family}: every set of targets on every trained suffix is a config PEFT accepts, taking exactly the modules the weights file has`, () => {
      for (const targets of nonEmptySubsets([...linears])) {
        for (const layers of SUFFIXES) {
          const what = `${targets.join('+')} on [${layers[0]}, 12)`;
          const files = adapterFiles(adapter(c, targets, layers), c, 'base');
          const config = JSON.parse(new TextDecoder().decode(files[ADAPTER_CONFIG])) as PeftJson;
          expect(peftRefusal(config), what).toBeUndefined();
          const inWeights = new Set(
            [...parseSafetensors(files[ADAPTER_WEIGHTS]!).tensors.keys()].map((k) => k.replace(/^base_model\.model\./, '').replace(/\.lora_[AB]\.weight$/, '')),
          );
          expect(inWeights.size, what).toBe(targets.length * layers.length);
          expect(new Set(moduleNames(c).filter((m) => peftTakes(config, m))), what).toEqual(inWeights);
          const back = parseAdapter(files, c);
          expect([back.targets, back.layers], what).toEqual([targets, layers]);
        }
      }
    });
  }

  it('names a c_proj by its path only when the other c_proj is not adapted', () => {
    const targetModules = (targets: string[]) =>
      JSON.parse(new TextDecoder().decode(adapterFiles(adapter(GPT2, targets, [2, 3]), GPT2, 'base')[ADAPTER_CONFIG])).target_modules;
    expect(targetModules(['attn.c_attn', 'mlp.c_proj'])).toEqual(['c_attn', 'mlp.c_proj']);
    expect(targetModules(['attn.c_proj', 'mlp.c_proj'])).toEqual(['c_proj']);
    expect(targetModules(['attn.c_attn', 'mlp.c_fc'])).toEqual(['c_attn', 'c_fc']);
  });
});

describe('an adapter as PEFT reads it', () => {
  // core/peft/golden_adapter.py: PEFT's rules written plainly in Python, on weights from a formula.
  const golden = JSON.parse(readFileSync(new URL('./golden-adapter.json', import.meta.url), 'utf8')) as {
    shape: Record<string, number>;
    config: Record<string, unknown>;
    tensors: Record<string, { shape: number[]; values: number[] }>;
    deltas: Record<string, number[]>;
  };
  const base = makeModel('llama', golden.shape);
  const files = (config: Record<string, unknown> = golden.config, dtype: 'BF16' | 'F16' | 'F32' = 'BF16') => ({
    [ADAPTER_CONFIG]: new TextEncoder().encode(JSON.stringify(config)),
    [ADAPTER_WEIGHTS]: serializeSafetensors(
      new Map(Object.entries(golden.tensors).map(([name, t]) => [name, fromFloat32(Float32Array.from(t.values), t.shape, dtype)])),
      { format: 'pt' },
    ),
  });
  /** What merging changed in each adapted weight. */
  const deltas = (config?: Record<string, unknown>, dtype?: 'BF16' | 'F16' | 'F32') => {
    const merged = mergeAdapter(base, parseAdapter(files(config, dtype), base.config));
    return Object.fromEntries(Object.keys(golden.deltas).map((name) => [name, merged.params.get(name)!.map((x, i) => x - base.params.get(name)![i]!)]));
  };

  it('merges rsLoRA with a rank_pattern, an alpha_pattern and BF16 tensors as PEFT does', () => {
    for (const [name, got] of Object.entries(deltas())) expect(maxAbsDiff(got, golden.deltas[name]!), name).toBeLessThan(1e-6);
    // The same tensors as F16 and F32 (they are bfloat16 values, exact in both) merge the same.
    for (const dtype of ['F16', 'F32'] as const)
      for (const [name, got] of Object.entries(deltas(undefined, dtype))) expect(maxAbsDiff(got, golden.deltas[name]!)).toBeLessThan(1e-6);
  });

  it("follows LoraConfig's defaults and scales: lora_alpha 8 when absent, alpha / r without rsLoRA", () => {
    const { lora_alpha: _alpha, ...rest } = golden.config;
    const got = deltas({ ...rest, use_rslora: false });
    // Each module's scale against the golden's (alpha / sqrt(r)): q_proj 8/4 vs 8/2... as PEFT computes them.
    const ratio: Record<string, number> = {
      'layers.0.self_attn.q_proj.weight': 8 / 4 / (4 / Math.sqrt(4)),
      'layers.0.self_attn.v_proj.weight': 8 / 2 / (4 / Math.sqrt(2)),
      'layers.1.self_attn.q_proj.weight': 8 / 4 / (4 / Math.sqrt(4)),
      'layers.1.self_attn.v_proj.weight': 6 / 2 / (6 / Math.sqrt(2)),
    };
    for (const [name, want] of Object.entries(golden.deltas))
      expect(
        maxAbsDiff(
          got[name]!,
          want.map((x) => x * ratio[name]!),
        ),
        name,
      ).toBeLessThan(1e-6);
  });

  it('an adapter read without its rank_pattern does not fit: each module is checked against its own rank', () => {
    const { rank_pattern: _ranks, ...rest } = golden.config;
    expect(() => parseAdapter(files(rest), base.config, 'a')).toThrow(
      "a/adapter_model.safetensors: tensor 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight' has shape [4,8], expected [2,8]",
    );
  });

  it.each([
    [{ use_dora: true }, 'use_dora true asks for DoRA'],
    [{ bias: 'all' }, 'bias "all" asks for trained biases'],
    [{ lora_bias: true }, 'lora_bias true asks for a bias on lora_B'],
    [{ modules_to_save: ['lm_head'] }, 'modules_to_save ["lm_head"]: only the classification head'],
    [{ trainable_token_indices: [5] }, 'trainable_token_indices [5] asks for trained token embeddings'],
  ])('refuses by name what it cannot merge exactly: %j', (extra, message) => {
    expect(() => parseAdapter(files({ ...golden.config, ...extra }), base.config, 'a')).toThrow(`a/adapter_config.json: ${message}`);
  });
});
