/** The operator's held-out evaluation rows, read once per run (a GLUE TSV / JSON-lines file, or inline rows). */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { parseGenerationShard, type GenerationExample } from '../../core/data/generation.ts';
import { decodeLines, parseShard, type Example } from '../../core/data/shard.ts';
import type { RunSpec } from './spec.ts';

const LIMITS = { maxBytes: 2 ** 31, maxRows: 10_000_000, maxFieldChars: 1_000_000 };

async function evalFile(path: string): Promise<Uint8Array> {
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
      `task.eval.path ${path}: ${code === 'ENOENT' ? 'not found' : code === 'ELOOP' ? 'is a symbolic link, which the server does not follow' : (e as Error).message}`,
    );
  }
}

/** A generation task's held-out prompts and completions ({prompt, completion} or GSM8K {question, answer} lines). */
export async function generationEvalRows(spec: RunSpec): Promise<GenerationExample[]> {
  if (!spec.task.eval) return [];
  const { path, limit } = spec.task.eval;
  const bytes = await evalFile(path);
  try {
    const rows = parseGenerationShard(decodeLines(bytes), LIMITS);
    return limit ? rows.slice(0, limit) : rows;
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
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
