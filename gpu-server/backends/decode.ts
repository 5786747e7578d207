/**
 * Decoding, for any runtime: the loop that continues a prompt token by token (greedy or sampled, stop tokens, the
 * position limit) around a runtime's `step`, which keeps its own KV cache.
 */
import { Random } from '../../core/random.ts';

export interface DecodeOptions {
  maxNewTokens: number;
  /** 0: greedy (argmax); otherwise sample from softmax(logits / temperature), among the topK most likely if set. */
  temperature?: number;
  topK?: number;
  seed?: number;
  /** Stop after any of these (default: the config's EOS tokens). */
  stop?: readonly number[];
  /** Stop once this says the new tokens so far are enough (a stop sequence in their text, as evaluation harnesses stop). */
  until?: (generated: readonly number[]) => boolean;
  /** false recomputes the whole sequence at every step (for tests: the cache must not change a token). */
  cache?: boolean;
}

/**
 * The next-token logits after `tokens`, of which the first `cached` are in the step's KV cache (0: start afresh,
 * dropping any cache). The step keeps the keys and values of every token it was given when `keep` is true.
 */
export type DecodeStep = (tokens: readonly number[], cached: number, keep: boolean) => Promise<Float32Array>;

/** Continues `prompt` (token ids, starting with BOS if the model expects one); returns only the new tokens. */
export async function decode(
  prompt: readonly number[],
  { maxNewTokens, temperature = 0, topK, seed = 0, stop = [], until, cache = true }: DecodeOptions,
  maxPositions: number,
  step: DecodeStep,
): Promise<number[]> {
  if (prompt.length === 0) throw new Error('generate needs a prompt of at least one token');
  if (prompt.length + maxNewTokens > maxPositions)
    throw new RangeError(`prompt (${prompt.length}) + maxNewTokens (${maxNewTokens}) exceeds the model's max_position_embeddings (${maxPositions})`);
  const rng = new Random(seed);
  const tokens = [...prompt];
  for (let s = 0; s < maxNewTokens; s++) {
    const token = pickToken(await step(tokens, cache && s > 0 ? tokens.length - 1 : 0, cache), temperature, topK, rng);
    tokens.push(token);
    if (stop.includes(token) || until?.(tokens.slice(prompt.length))) break;
  }
  return tokens.slice(prompt.length);
}

/** Argmax at temperature 0; otherwise a draw from softmax(logits / temperature), restricted to the topK largest. */
export function pickToken(logits: Float32Array, temperature: number, topK: number | undefined, rng: Random): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  if (!(temperature > 0)) return best;
  const order = topK
    ? Array.from(logits.keys())
        .sort((a, b) => logits[b]! - logits[a]!)
        .slice(0, topK)
    : Array.from(logits.keys());
  const weights = order.map((i) => Math.exp((logits[i]! - logits[best]!) / temperature));
  let u = rng.uniform() * weights.reduce((a, w) => a + w, 0);
  for (let j = 0; j < order.length; j++) if ((u -= weights[j]!) <= 0) return order[j]!;
  return order.at(-1)!;
}
