import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sharedFolder } from '../tests/shared-data.ts';
import { syntheticTopics, TOPIC_WORDS } from '../core/data/synthetic.ts';
import { MNLI_TRAIN_SHARE, readGsm8k, readTask, TOPIC_TASK } from './tasks.ts';

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

describe('the generated topic task', () => {
  const topicsIn = (text: string) => text.split(' ').flatMap((w) => TOPIC_WORDS.flatMap((ws, t) => (ws.includes(w) ? [t] : [])));

  it('is deterministic, balanced, and says how it was made', async () => {
    const task = await readTask('topics', 'no-datasets-needed');
    expect([task.train.length, task.eval.length]).toEqual([TOPIC_TASK.train, TOPIC_TASK.eval]);
    expect(task.labels).toEqual(['0', '1', '2', '3']);
    expect(task.notes[0]).toMatch(
      new RegExp(`^topics: generated .* ${TOPIC_TASK.signal} topic words a sentence, a paired topic's word in 30% of them, 5% of labels redrawn`),
    );
    expect(await readTask('topics', 'elsewhere')).toEqual(task);
    for (const l of [0, 1, 2, 3]) expect(Math.abs(task.train.filter((r) => r.label === l).length / task.train.length - 0.25)).toBeLessThan(0.03);
  });

  it("carries `signal` words of its topic, a paired topic's word at the confusion rate, and redrawn labels at the noise rate", () => {
    for (const r of syntheticTopics(400, 1, { signal: 3, confusion: 0, labelNoise: 0 })) expect(topicsIn(r.text)).toEqual([0, 0, 0].map(() => Number(r.label)));
    for (const r of syntheticTopics(400, 1, { signal: 1, confusion: 1, labelNoise: 0 }))
      expect(topicsIn(r.text).sort()).toEqual([Number(r.label), Number(r.label) ^ 1].sort());
    const noisy = syntheticTopics(4000, 2, { signal: 2, confusion: 0, labelNoise: 0.2 });
    const wrong = noisy.filter((r) => topicsIn(r.text)[0] !== Number(r.label)).length / noisy.length;
    expect(Math.abs(wrong - 0.2 * 0.75)).toBeLessThan(0.02); // a redrawn label is the right one a quarter of the time
    expect(() => syntheticTopics(1, 0, { signal: 0, confusion: 0, labelNoise: 0 })).toThrow('signal must be at least 1 topic word, got 0');
  });
});
