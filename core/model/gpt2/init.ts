/** Random GPT-2 weights, initialised as Hugging Face's GPT2PreTrainedModel._init_weights does, deterministic for a seed. */
import { Random } from '../../random.ts';
import type { GPT2Config } from './config.ts';
import { paramShapes, type GPT2Model, type Params } from './weights.ts';
import { numel } from '../../tensors/tensor.ts';

export interface InitOptions {
  seed?: number;
  /**
   * Std of noise added to biases and layer-norm parameters (Hugging Face initialises them to 0 and 1).
   * Tests set it so that every parameter changes the output.
   */
  paramNoise?: number;
}

const STD = 0.02;

export function initModel(config: GPT2Config, { seed = 0, paramNoise = 0 }: InitOptions = {}): GPT2Model {
  const rng = new Random(seed);
  const params: Params = new Map();
  for (const [name, shape] of paramShapes(config)) {
    const p = new Float32Array(numel(shape));
    if (name.endsWith('c_proj.weight')) {
      // GPT-2 scales the residual projections by 1/sqrt(2 * n_layer).
      rng.fillNormal(p, STD / Math.sqrt(2 * config.nLayer));
    } else if (name.endsWith('.weight') && shape.length === 2) {
      rng.fillNormal(p, STD);
    } else if (/ln_\w+\.weight$/.test(name)) {
      rng.fillNormal(p, paramNoise, 1);
    } else {
      rng.fillNormal(p, paramNoise);
    }
    params.set(name, p);
  }
  return { config, params };
}

/** A new classification head for a checkpoint that has none (an LM checkpoint, any family): [num_labels, n_embd]. */
export function initClassificationHead(config: Pick<GPT2Config, 'numLabels' | 'nEmbd'>, seed = 0): Float32Array {
  return new Random(seed).fillNormal(new Float32Array(config.numLabels * config.nEmbd), STD);
}
