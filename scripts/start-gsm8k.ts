/**
 * npm start -- --task gsm8k: what differs from the classification run. A tiny Llama-3-shaped model (Llama 3's
 * vocabulary and tokenizer, llama3 rope scaling, grouped-query attention) made on the fly, GSM8K problems as the
 * devices' generation shards, and a run whose evaluation generates answers and scores their final number.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseGenerationShard, type GenerationExample } from '../core/data/generation.ts';
import type { RoundMetrics } from '../gpu-server/runs/types.ts';

export const GSM8K_DEFAULT = fileURLToPath(new URL('../../shared/datasets/gsm8k/train.jsonl', import.meta.url));

/** A slow, a middling and a fast device for a sequence of 192 tokens: cuts 2, 3 and 3 of the tiny Llama. */
export const GSM8K_PROFILES = [
  { memoryMB: 128, gflops: 0.45, maxBatchSeconds: 1 },
  { memoryMB: 128, gflops: 0.65, maxBatchSeconds: 1 },
  { memoryMB: 256, gflops: 5, maxBatchSeconds: 1 },
];

/**
 * GSM8K problems: the first rows for the devices' shards, the next ones held out, written where the server reads them
 * (`evalFile`), with the whole train split beside it (`shotsFile(evalFile)`), which evaluation draws its few-shot
 * examples from as lm-evaluation-harness does.
 */
export async function gsm8kData(path: string, trainRows: number, evalRows: number, evalFile: string): Promise<{ train: GenerationExample[]; source: string }> {
  const text = await readFile(path, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new Error(`${path}: ${e.code === 'ENOENT' ? 'not found; give GSM8K JSON lines with --data (see ../shared/datasets/README.md)' : e.message}`);
  });
  const lines = text.split('\n');
  const rows = parseGenerationShard(lines.slice(0, trainRows + evalRows), { maxBytes: 2 ** 31, maxRows: 10_000_000, maxFieldChars: 100_000 });
  if (rows.length < trainRows + evalRows) throw new Error(`${path}: ${rows.length} problems, ${trainRows + evalRows} needed`);
  const held = lines.slice(trainRows, trainRows + evalRows);
  await writeFile(evalFile, held.join('\n') + '\n');
  await writeFile(shotsFile(evalFile), text);
  return { train: rows.slice(0, trainRows), source: `${path} (first ${trainRows} problems for the devices, the next ${evalRows} held out)` };
}

/** Where gsm8kData writes the train split that few-shot examples come from. */
const shotsFile = (evalFile: string) => join(dirname(evalFile), 'gsm8k-train.jsonl');

/** The run's task: held-out problems, answers generated after the harness's 5 shots from the train split. */
export function gsm8kRunTask(evalFile: string, generate = { maxNewTokens: 48, limit: 4 }) {
  return { kind: 'generation', eval: { path: evalFile, format: 'jsonl' }, generate: { ...generate, fewshot: { count: 5, path: shotsFile(evalFile) } } };
}

export const GSM8K_HEADER =
  '| round | client order | train loss | held-out loss | exact match (strict-match, 5-shot) | device forward (s) | server train (s) | server idle (s) | MB moved | devices reused | wall (s) |';

/** The last round's generations: prompt, what the model wrote, the answer each of the harness's filters took, the right one. */
export function printSamples(m: RoundMetrics): void {
  console.log('\n| prompt (start) | generated (start) | strict-match | flexible-extract | expected |\n|---|---|---|---|---|');
  const cell = (t: string) => JSON.stringify(t.replace(/\s+/g, ' ').slice(0, 60)).slice(1, -1).replace(/\|/g, '\\|');
  for (const s of m.samples ?? [])
    console.log(
      `| ${cell(s.prompt.replace(/^Question: /, ''))} | ${cell(s.generated)} | ${s.predicted ?? '-'} | ${s.flexible ?? '-'} | ${s.expected ?? '-'} |`,
    );
}
