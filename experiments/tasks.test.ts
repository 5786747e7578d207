import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sharedFolder } from '../tests/shared-data.ts';
import { MNLI_TRAIN_SHARE, readGsm8k, readTask } from './tasks.ts';

const DATASETS = sharedFolder('datasets');
const DATA = DATASETS.path;

describe.skipIf(DATASETS.missing)('task readers on the real files', () => {
  it('SST-2 and MRPC: the row and label counts of ../shared/datasets/README.md', async () => {
    const sst = await readTask('sst2', DATA);
    expect([sst.train.length, sst.eval.length]).toEqual([67349, 872]);
    expect(sst.train.filter((r) => r.label === 1).length).toBe(37569);
    const mrpc = await readTask('mrpc', DATA);
    expect([mrpc.train.length, mrpc.eval.length]).toEqual([3668, 408]);
    expect(mrpc.train.filter((r) => r.label === 1).length).toBe(2474);
    expect(mrpc.train.every((r) => typeof r.textPair === 'string')).toBe(true);
  });

  it('MNLI: dev-matched split deterministically, and it says so', async () => {
    const a = await readTask('mnli', DATA);
    const b = await readTask('mnli', DATA);
    expect(a.train.length + a.eval.length).toBe(9815);
    expect(a.train.length).toBe(Math.round(9815 * MNLI_TRAIN_SHARE));
    expect(a.train.slice(0, 5)).toEqual(b.train.slice(0, 5));
    expect(a.notes[0]).toMatch(/only dev-matched is available here; split deterministically/);
    expect(new Set(a.eval.map((r) => r.label))).toEqual(new Set([0, 1, 2]));
  });

  it('GSM8K: 7,473 problems with their final answers', async () => {
    const rows = await readGsm8k(join(DATA, 'gsm8k/train.jsonl'));
    expect(rows).toHaveLength(7473);
    expect(rows[0].final).toBe('72');
  });
});

describe('task readers on malformed input', () => {
  it('name the file and line', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'splitfrozen-tasks-'));
    await writeFile(join(dir, 'g.jsonl'), '{"question":"q","answer":"a #### 3"}\n{"question":"q","answer":"no number"}\n');
    await expect(readGsm8k(join(dir, 'g.jsonl'))).rejects.toThrow(`${join(dir, 'g.jsonl')}: line 2: field 'answer' does not end with "#### <number>"`);
    await writeFile(join(dir, 'bad.jsonl'), '{"question":');
    await expect(readGsm8k(join(dir, 'bad.jsonl'))).rejects.toThrow(/bad\.jsonl: line 1: not valid JSON/);
    await expect(readTask('sst2', dir)).rejects.toThrow(/glue\/SST-2\/train\.tsv: not found/);
    await mkdir(join(dir, 'glue/SST-2'), { recursive: true });
    await writeFile(join(dir, 'glue/SST-2/train.tsv'), 'sentence\tlabel\ngood\t1\nbad\t7\n');
    await expect(readTask('sst2', dir)).rejects.toThrow(/SST-2\/train\.tsv: line 3: field 'label' is "7", not one of the label set/);
  });
});
