/**
 * A device's private training data: rows of text (or text pairs) with a label from a fixed label set, uploaded as
 * JSON lines or GLUE-style TSV. Parsing validates everything before anything is stored; each error names the line
 * and field, and says whether the problem is the content (400) or the size (413).
 */
import { parseJson } from '../json/parse.ts';
import type { TextInput } from '../tokenizer/tokenizer.ts';

export interface Example {
  text: string;
  textPair?: string;
  /** Index into the shard's label set. */
  label: number;
}

/** A row as the tokenizer takes it: its text, or its sentence pair. */
export function textInput(r: Example): TextInput {
  return r.textPair === undefined ? r.text : [r.text, r.textPair];
}

export type ShardFormat = 'jsonl' | 'tsv';

export interface ShardLimits {
  maxBytes: number;
  maxRows: number;
  maxFieldChars: number;
}

export const DEFAULT_LIMITS: ShardLimits = { maxBytes: 16 * 2 ** 20, maxRows: 200_000, maxFieldChars: 20_000 };

export class ShardError extends Error {
  constructor(
    readonly status: 400 | 413,
    message: string,
  ) {
    super(message);
    this.name = 'ShardError';
  }
}

/** GLUE and Hugging Face column names, mapped to ours. */
const TSV_COLUMNS: Record<string, 'text' | 'textPair' | 'label'> = {
  text: 'text',
  sentence: 'text',
  sentence1: 'text',
  premise: 'text',
  question: 'text',
  '#1 String': 'text',
  text_pair: 'textPair',
  sentence2: 'textPair',
  hypothesis: 'textPair',
  '#2 String': 'textPair',
  label: 'label',
  gold_label: 'label',
  Quality: 'label',
};

/** Our own names for the fields, used in messages when a row has none of the known names. */
const FIELD_NAMES = { text: 'text', textPair: 'text_pair', label: 'label' } as const;

export function parseShard(bytes: Uint8Array, format: ShardFormat, labels: readonly string[], limits: ShardLimits = DEFAULT_LIMITS): Example[] {
  if (bytes.byteLength > limits.maxBytes) throw new ShardError(413, `shard is ${bytes.byteLength} bytes; the limit is ${limits.maxBytes}`);
  if (labels.length < 2 || new Set(labels).size !== labels.length)
    throw new ShardError(400, `label set ${JSON.stringify(labels)} must hold at least two distinct labels`);
  const lines = decodeLines(bytes);
  const rows: Example[] = [];
  const add = (line: number, fields: { text?: unknown; textPair?: unknown; label?: unknown }, names: { text: string; textPair: string; label: string }) => {
    const fail = (field: string, message: string): never => {
      throw new ShardError(400, `line ${line}: field '${field}' ${message}`);
    };
    const str = (value: unknown, field: string, required: boolean): string | undefined => {
      if (value === undefined || value === null) return required ? fail(field, 'is missing') : undefined;
      if (typeof value !== 'string') return fail(field, `must be a string, got ${typeof value}`);
      if (required && value.trim() === '') fail(field, 'is empty');
      if (value.length > limits.maxFieldChars) fail(field, `has ${value.length} characters; the limit is ${limits.maxFieldChars}`);
      return value;
    };
    const text = str(fields.text, names.text, true)!;
    const textPair = str(fields.textPair, names.textPair, false);
    if (fields.label === undefined || fields.label === null) fail(names.label, 'is missing');
    const label = labels.indexOf(String(fields.label));
    if (label < 0) fail(names.label, `is ${JSON.stringify(fields.label)}, not one of the label set ${JSON.stringify(labels)}`);
    if (rows.length === limits.maxRows) throw new ShardError(413, `line ${line}: shard has more than ${limits.maxRows} rows, the limit`);
    rows.push(textPair === undefined ? { text, label } : { text, textPair, label });
  };

  if (format === 'jsonl') {
    lines.forEach((raw, i) => {
      if (raw.trim() === '') return;
      let value: unknown;
      try {
        value = parseJson(raw, `line ${i + 1}`);
      } catch (e) {
        throw new ShardError(400, (e as Error).message);
      }
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ShardError(400, `line ${i + 1}: not a JSON object`);
      const v = value as Record<string, unknown>;
      // The same field names as TSV columns: {text, text_pair}, {premise, hypothesis}, {sentence1, sentence2}, ...
      const pick = (field: 'text' | 'textPair' | 'label') => Object.keys(v).find((k) => TSV_COLUMNS[k] === field) ?? FIELD_NAMES[field];
      const names = { text: pick('text'), textPair: pick('textPair'), label: pick('label') };
      add(i + 1, { text: v[names.text], textPair: v[names.textPair], label: v[names.label] }, names);
    });
  } else {
    const header = (lines[0] ?? '').split('\t');
    const index: Partial<Record<'text' | 'textPair' | 'label', number>> = {};
    header.forEach((name, col) => {
      const ours = TSV_COLUMNS[name.trim()];
      if (ours && index[ours] === undefined) index[ours] = col;
    });
    if (index.text === undefined || index.label === undefined) {
      throw new ShardError(
        400,
        `line 1: the TSV header ${JSON.stringify(header)} needs a text column (${Object.keys(TSV_COLUMNS)
          .filter((k) => TSV_COLUMNS[k] === 'text')
          .join(', ')}) and a label column (label, gold_label, Quality)`,
      );
    }
    const names = { text: header[index.text], textPair: index.textPair === undefined ? 'text_pair' : header[index.textPair], label: header[index.label] };
    lines.slice(1).forEach((raw, i) => {
      if (raw.trim() === '') return;
      const cols = raw.split('\t');
      if (cols.length !== header.length) throw new ShardError(400, `line ${i + 2}: has ${cols.length} tab-separated fields, the header has ${header.length}`);
      add(i + 2, { text: cols[index.text!], textPair: index.textPair === undefined ? undefined : cols[index.textPair], label: cols[index.label!] }, names);
    });
  }
  if (rows.length === 0) throw new ShardError(400, 'shard has no rows');
  return rows;
}

/** UTF-8 lines without the byte-order mark; an invalid byte sequence is reported with its line. */
export function decodeLines(bytes: Uint8Array): string[] {
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
  try {
    return decoder.decode(bytes).split(/\r?\n/);
  } catch {
    let line = 1;
    let start = 0;
    for (let i = 0; i <= bytes.length; i++) {
      if (i === bytes.length || bytes[i] === 0x0a) {
        try {
          decoder.decode(bytes.subarray(start, i));
        } catch {
          throw new ShardError(400, `line ${line}: not valid UTF-8`);
        }
        line++;
        start = i + 1;
      }
    }
    throw new ShardError(400, 'not valid UTF-8');
  }
}

/** The stored form of a validated shard: one JSON object per line with the label as an index. */
export function serializeRows(rows: readonly Example[]): string {
  return (
    rows
      .map((r) => JSON.stringify(r.textPair === undefined ? { text: r.text, label: r.label } : { text: r.text, text_pair: r.textPair, label: r.label }))
      .join('\n') + '\n'
  );
}

export function deserializeRows(text: string): Example[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const v = JSON.parse(l);
      return v.text_pair === undefined ? { text: v.text, label: v.label } : { text: v.text, textPair: v.text_pair, label: v.label };
    });
}
