/** Random Llama weights, initialised as Hugging Face's LlamaPreTrainedModel._init_weights does, deterministic for a seed. */
import { Random } from '../../random.ts';
import { numel } from '../../tensors/tensor.ts';
import { SCORE, type Params } from '../params.ts';
import type { LlamaConfig } from './config.ts';
import { llamaParamShapes, type LlamaModel } from './weights.ts';

/** A causal LM: no classification head. `normNoise`: std of noise around the RMSNorm weights' 1, so that tests see every parameter matter. */
export function initLlama(config: LlamaConfig, { seed = 0, normNoise = 0 }: { seed?: number; normNoise?: number } = {}): LlamaModel {
  const rng = new Random(seed);
  const params: Params = new Map();
  for (const [name, shape] of llamaParamShapes(config)) {
    if (name === SCORE) continue;
    const p = new Float32Array(numel(shape));
    if (shape.length === 2) rng.fillNormal(p, 0.02);
    else rng.fillNormal(p, normNoise, 1);
    params.set(name, p);
  }
  return { config, params };
}
