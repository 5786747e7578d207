/**
 * Few-shot prompts as lm-evaluation-harness builds them for a generate-until task (its gsm8k: 5 shots from the train
 * split): one sampler seeded once (its fewshot_random_seed, 1234) draws for each evaluated row in turn, and the
 * context is each shot's prompt and target, then two newlines, before the row's own prompt. When the shots come from
 * the split being evaluated (here: whenever the pool holds an evaluated row, as GSM8K rows held out of its train
 * split do), it draws one more and drops the row itself, as the harness does for a shared split: no prompt holds its
 * own answer.
 */
import type { GenerationExample } from './generation.ts';
import { PythonRandom } from './python-random.ts';

/** The harness's default fewshot_random_seed. */
export const FEWSHOT_SEED = 1234;

/** The harness's fewshot_delimiter, after each shot's prompt and target. */
const FEWSHOT_DELIMITER = '\n\n';

const same = (a: GenerationExample, b: GenerationExample) => a.prompt === b.prompt && a.completion === b.completion;

/** The few-shot context (what precedes the prompt) for each of `rows` in order, drawn from `pool`. */
export function fewshotContexts(rows: readonly GenerationExample[], pool: readonly GenerationExample[], count: number, seed = FEWSHOT_SEED): string[] {
  if (count === 0) return rows.map(() => '');
  const sharedSplit = rows.some((r) => pool.some((p) => same(p, r)));
  const needed = count + (sharedSplit ? 1 : 0);
  if (pool.length < needed) throw new RangeError(`${count} few-shot examples need a pool of at least ${needed} rows; it has ${pool.length}`);
  const rng = new PythonRandom(seed);
  return rows.map((row) => {
    const drawn = rng.sample(pool.length, needed).map((i) => pool[i]!);
    const shots = sharedSplit ? drawn.filter((p) => !same(p, row)).slice(0, count) : drawn;
    return shots.map((s) => s.prompt + s.completion + FEWSHOT_DELIMITER).join('');
  });
}
