/** The operator's held-out evaluation rows, read once per run (a GLUE TSV / JSON-lines file, or inline rows). */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { parseGenerationShard, type GenerationExample } from '../../core/data/generation.ts';
import { decodeLines, parseShard, type Example } from '../../core/data/shard.ts';
import { fewshotContexts } from '../../core/data/fewshot.ts';
import type { RunSpec } from './spec.ts';

const LIMITS = { maxBytes: 2 ** 31, maxRows: 10_000_000, maxFieldChars: 1_000_000 };

async function evalFile(path: string, field = 'task.eval.path'): Promise<Uint8Array> {
  try {
    // O_NOFOLLOW: a symbolic link put in the file's place after the run was created is not followed.
    const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      return await handle.readFile();
    } finally {
      await handle.close();
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(
      `${field} ${path}: ${code === 'ENOENT' ? 'not found' : code === 'ELOOP' ? 'is a symbolic link, which the server does not follow' : (e as Error).message}`,
    );
  }
}

async function generationFile(path: string, field: string): Promise<GenerationExample[]> {
  const bytes = await evalFile(path, field);
  try {
    return parseGenerationShard(decodeLines(bytes), LIMITS);
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
}

/**
 * A generation task's held-out prompts and completions ({prompt, completion} or GSM8K {question, answer} lines), and
 * the few-shot context of each row that evaluation completes (the first `generate.limit`), drawn as
 * lm-evaluation-harness draws them from `generate.fewshot.path` (default: the held-out file).
 */
export async function generationEval(spec: RunSpec): Promise<{ rows: GenerationExample[]; contexts: string[] }> {
  if (!spec.task.eval) return { rows: [], contexts: [] };
  const { path, limit } = spec.task.eval;
  const all = await generationFile(path, 'task.eval.path');
  const rows = limit ? all.slice(0, limit) : all;
  const { fewshot, limit: completed } = spec.task.generate;
  const pool = fewshot.path ? await generationFile(fewshot.path, 'task.generate.fewshot.path') : all;
  try {
    return { rows, contexts: fewshotContexts(rows.slice(0, completed), pool, fewshot.count, fewshot.seed) };
  } catch (e) {
    throw new Error(`task.generate.fewshot: ${(e as Error).message}`);
  }
}

export async function evaluationRows(spec: RunSpec): Promise<Example[]> {
  const { labels } = spec.task;
  if (spec.task.evalRows) return spec.task.evalRows.map((r) => ({ text: r.text, textPair: r.text_pair, label: labels.indexOf(String(r.label)) }));
  if (!spec.task.eval) return [];
  const { path, format, limit } = spec.task.eval;
  const bytes = await evalFile(path);
  let rows: Example[];
  try {
    rows = parseShard(bytes, format, labels, LIMITS);
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
  return limit ? rows.slice(0, limit) : rows;
}
