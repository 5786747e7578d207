/** Random Llama weights, initialised as Hugging Face's LlamaPreTrainedModel._init_weights does, deterministic for a seed. */
import { Random } from '../../random.ts';
import { numel } from '../../tensors/tensor.ts';
import { SCORE, type Params } from '../params.ts';
import type { LlamaConfig } from './config.ts';
import { llamaForwardOrder, llamaParamShapes, type LlamaModel } from './weights.ts';

/** A causal LM: no classification head. `normNoise`: std of noise around the RMSNorm weights' 1, so that tests see every parameter matter. */
export function initLlama(config: LlamaConfig, { seed = 0, normNoise = 0 }: { seed?: number; normNoise?: number } = {}): LlamaModel {
  const rng = new Random(seed);
  const drawn = new Map<string, Float32Array>();
  for (const [name, shape] of llamaForwardOrder(config)) {
    if (name === SCORE) continue;
    const p = new Float32Array(numel(shape));
    if (shape.length === 2) rng.fillNormal(p, 0.02);
    else rng.fillNormal(p, normNoise, 1);
    drawn.set(name, p);
  }
  // Held in the checkpoint's order, as a loaded model holds them.
  const params: Params = new Map([...llamaParamShapes(config).keys()].filter((n) => drawn.has(n)).map((n) => [n, drawn.get(n)!]));
  return { config, params };
}
