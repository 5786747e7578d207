/** The operator's held-out evaluation rows, read once per run (a GLUE TSV / JSON-lines file, or inline rows). */
import { readFile } from 'node:fs/promises';
import { parseShard, type Example } from '../../core/data/shard.ts';
import type { RunSpec } from './spec.ts';

export async function evaluationRows(spec: RunSpec): Promise<Example[]> {
  const { labels } = spec.task;
  if (spec.task.evalRows) return spec.task.evalRows.map((r) => ({ text: r.text, textPair: r.text_pair, label: labels.indexOf(String(r.label)) }));
  if (!spec.task.eval) return [];
  const { path, format, limit } = spec.task.eval;
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new Error(`task.eval.path ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (e as Error).message}`);
  }
  let rows: Example[];
  try {
    rows = parseShard(bytes, format, labels, { maxBytes: 2 ** 31, maxRows: 10_000_000, maxFieldChars: 1_000_000 });
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
  return limit ? rows.slice(0, limit) : rows;
}
