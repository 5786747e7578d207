import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { sharedFolder } from '../../tests/shared-data.ts';
import { deserializeRows, parseShard, serializeRows, ShardError, type ShardLimits } from './shard.ts';

const enc = (s: string) => new TextEncoder().encode(s);
const DATASETS = sharedFolder('datasets');
const binary = ['0', '1'];

function error(fn: () => unknown): ShardError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ShardError) return e;
    throw e;
  }
  throw new Error('no error');
}

describe('shard parsing', () => {
  it.skipIf(DATASETS.missing)('reads the real GLUE files: SST-2 and MRPC (with its byte-order mark) TSV', () => {
    const sst = parseShard(readFileSync(new URL('glue/SST-2/dev.tsv', DATASETS.url)), 'tsv', binary);
    expect(sst.length).toBe(872);
    expect(sst[0]).toEqual({ text: "it 's a charming and often affecting journey . ", label: 1 });
    expect(sst.filter((r) => r.label === 1).length).toBe(444);
    const mrpc = parseShard(readFileSync(new URL('glue/MRPC/dev.tsv', DATASETS.url)), 'tsv', binary);
    expect(mrpc.length).toBe(408);
    expect(mrpc.filter((r) => r.label === 1).length).toBe(279);
    expect(mrpc[0].textPair).toBeTypeOf('string');
  });

  it.skipIf(DATASETS.missing)('reads MNLI JSON lines with string labels, and round-trips through the stored form', () => {
    const head = readFileSync(new URL('glue/MNLI/dev_matched.jsonl', DATASETS.url), 'utf8').split('\n').slice(0, 50).join('\n');
    const rows = parseShard(enc(head), 'jsonl', ['entailment', 'neutral', 'contradiction']);
    expect(rows[0]).toEqual({ text: 'The new rights are nice enough', textPair: 'Everyone really likes the newest benefits ', label: 1 });
    expect(rows.length).toBe(50);
    expect(new Set(rows.map((r) => r.label))).toEqual(new Set([0, 1, 2]));
    expect(deserializeRows(serializeRows(rows))).toEqual(rows);
  });

  it('names the line and field of malformed content (400)', () => {
    const cases: Array<[string, 'jsonl' | 'tsv', RegExp]> = [
      ['{"text":"a","label":1}\n{"text":"b"}\n', 'jsonl', /^line 2: field 'label' is missing$/],
      ['{"text":"a","label":1}\n{"text":"b","label":"7"}', 'jsonl', /^line 2: field 'label' is "7", not one of the label set \["0","1"\]$/],
      ['{"text":3,"label":1}', 'jsonl', /^line 1: field 'text' must be a string, got number$/],
      ['{"text":"  ","label":1}', 'jsonl', /^line 1: field 'text' is empty$/],
      ['{"text":"a","label":1}\n{"text":"a",', 'jsonl', /^line 2: not valid JSON/],
      // Where it breaks, never what it holds (an evaluation file the server reads may be anyone's).
      ['{"text":"a","label":1}\n{"text": root:x:0:0, "label": 1}', 'jsonl', /^line 2: not valid JSON at line 1, column 10 \(InvalidSymbol\)$/],
      ['[1]', 'jsonl', /^line 1: not a JSON object$/],
      ['sentence\tlabel\nfine\t1\nbroken\n', 'tsv', /^line 3: has 1 tab-separated fields, the header has 2$/],
      ['sentence\tlabel\nfine\t2\n', 'tsv', /^line 2: field 'label' is "2", not one of/],
      ['words\tscore\nx\t1\n', 'tsv', /^line 1: the TSV header \["words","score"\] needs a text column/],
      ['\n\n', 'jsonl', /^shard has no rows$/],
    ];
    for (const [text, format, message] of cases) {
      const e = error(() => parseShard(enc(text), format, binary));
      expect(e.status, text).toBe(400);
      expect(e.message, text).toMatch(message);
    }
    const bad = new Uint8Array([...enc('sentence\tlabel\nok\t1\n'), 0xff, 0xfe, ...enc('\t0\n')]);
    expect(error(() => parseShard(bad, 'tsv', binary)).message).toBe('line 3: not valid UTF-8');
    expect(error(() => parseShard(enc('{"text":"a","label":1}'), 'jsonl', ['x'])).message).toMatch(/at least two distinct labels/);
  });

  it('refuses oversized shards, rows and fields (413 for size, 400 for a field)', () => {
    const limits: ShardLimits = { maxBytes: 100, maxRows: 2, maxFieldChars: 10 };
    expect(error(() => parseShard(enc('x'.repeat(101)), 'jsonl', binary, limits))).toMatchObject({
      status: 413,
      message: 'shard is 101 bytes; the limit is 100',
    });
    const three = '{"text":"a","label":1}\n{"text":"b","label":1}\n{"text":"c","label":0}';
    expect(error(() => parseShard(enc(three), 'jsonl', binary, limits))).toMatchObject({
      status: 413,
      message: 'line 3: shard has more than 2 rows, the limit',
    });
    expect(error(() => parseShard(enc('{"text":"abcdefghijk","label":1}'), 'jsonl', binary, limits))).toMatchObject({
      status: 400,
      message: "line 1: field 'text' has 11 characters; the limit is 10",
    });
  });
});
