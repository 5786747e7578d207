/**
 * LoRA adapters on a model's frozen block linears (any family): y = x W + (dropout(x) A B) * alpha / r, with W as
 * [in, out], A [in, r] and B [r, out]. Initialised as PEFT does (A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0), so training starts
 * from the base model exactly.
 */
import * as tf from '@tensorflow/tfjs';
import { blockLinears, blockPath, linearInOut, type ModelConfig } from '../../core/model/family.ts';
import type { AdapterWeights } from '../../core/peft/adapter.ts';
import { Random } from '../../core/random.ts';
import type { Adapters, BlockAdapters } from '../backends/tfjs/ops.ts';

export interface LoraSpec {
  rank: number;
  alpha: number;
  dropout: number;
  /** Block linears by module path: 'attn.c_attn' (GPT-2), 'self_attn.q_proj' (Llama). */
  targets: string[];
  /** Adapters sit on blocks [from, n_layer): at or above the deepest cut of the run. */
  from: number;
}

/** `h.{layer}.{linear}` (GPT-2), `layers.{layer}.{linear}` (Llama). */
export const loraKey = (c: ModelConfig, layer: number, linear: string) => `${blockPath(c, layer)}.${linear}`;

export class LoraAdapters {
  readonly spec: LoraSpec;
  readonly scale: number;
  /** A [in, r] and B [r, out] per adapted linear, keyed `h.{layer}.{linear}`. */
  readonly a = new Map<string, tf.Variable<tf.Rank.R2>>();
  readonly b = new Map<string, tf.Variable<tf.Rank.R2>>();

  private readonly config: ModelConfig;

  constructor(config: ModelConfig, spec: LoraSpec, seed: number) {
    if (!(spec.rank >= 1)) throw new Error(`LoRA rank must be at least 1, got ${spec.rank}`);
    if (spec.from < 0 || spec.from >= config.nLayer) throw new Error(`LoRA layers start at ${spec.from}, outside 0..${config.nLayer - 1}`);
    const linears = blockLinears(config);
    for (const t of spec.targets) if (!linears.includes(t)) throw new Error(`unknown LoRA target '${t}': use ${linears.join(', ')}`);
    this.config = config;
    this.spec = spec;
    this.scale = spec.alpha / spec.rank;
    const rng = new Random(seed);
    for (let layer = spec.from; layer < config.nLayer; layer++) {
      for (const linear of linears.filter((t) => spec.targets.includes(t))) {
        const [inp, out] = linearInOut(config, linear);
        const bound = 1 / Math.sqrt(inp);
        const a = Float32Array.from({ length: inp * spec.rank }, () => (2 * rng.uniform() - 1) * bound);
        this.a.set(loraKey(config, layer, linear), tf.variable(tf.tensor2d(a, [inp, spec.rank]), true));
        this.b.set(loraKey(config, layer, linear), tf.variable(tf.zeros([spec.rank, out]), true));
      }
    }
  }

  /**
   * The adapters as the server's models (TfGPT2, TfLlama) apply them. In training with dropout, each adapted linear's input gets a dropout
   * multiplier (tf.dropout of ones) seeded by the step, so a run resumed from a checkpoint repeats them.
   */
  adapters(training: boolean, seed = 0): Adapters {
    let call = 0;
    return (layer, rows) => {
      const out: BlockAdapters = {};
      for (const linear of this.spec.targets) {
        const a = this.a.get(loraKey(this.config, layer, linear));
        if (!a) continue;
        const keep =
          training && this.spec.dropout > 0
            ? (tf.tidy(() => tf.dropout(tf.ones([rows, a.shape[0]]), this.spec.dropout, undefined, seed * 1009 + call++)) as tf.Tensor2D)
            : undefined;
        out[linear] = { a, b: this.b.get(loraKey(this.config, layer, linear))!, scale: this.scale, keep };
      }
      return out;
    };
  }

  variables(): tf.Variable[] {
    return [...this.a.values(), ...this.b.values()];
  }

  /** The adapters as PEFT files carry them (core/peft/adapter.ts), without a head. */
  weights(): Omit<AdapterWeights, 'head'> {
    const s = this.spec;
    const read = (m: Map<string, tf.Variable>) => new Map([...m].map(([k, v]) => [k, v.dataSync() as Float32Array]));
    const layers = Array.from({ length: this.config.nLayer - s.from }, (_, i) => s.from + i);
    return { rank: s.rank, alpha: s.alpha, dropout: s.dropout, targets: s.targets, layers, a: read(this.a), b: read(this.b) };
  }

  /** Every value as one flat vector, A's then B's. */
  flat(): Float32Array {
    const parts = this.variables().map((v) => v.dataSync() as Float32Array);
    const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  /** Takes the values of adapter weights that fit these adapters; throws naming an adapter they lack. */
  load(w: Pick<AdapterWeights, 'a' | 'b'>): void {
    for (const [key, v] of this.a) {
      const a = w.a.get(key);
      const b = w.b.get(key);
      if (!a || !b) throw new Error(`the adapter has no weights for ${key}`);
      v.assign(tf.tensor2d(a, v.shape));
      this.b.get(key)!.assign(tf.tensor2d(b, this.b.get(key)!.shape));
    }
  }

  dispose(): void {
    tf.dispose(this.variables());
  }
}
