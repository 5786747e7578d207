import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { gpt2Config } from '../core/model/gpt2/config.ts';
import { initModel } from '../core/model/gpt2/init.ts';
import type { ExperimentOptions } from './experiment.ts';
import { ADAMW_DEFAULTS } from '../gpu-server/train/adamw.ts';
import { codeSha256, commitOf, keptResults, provenance } from './provenance.ts';

const dirs: string[] = [];
afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

const model = initModel(gpt2Config({ nLayer: 2, nEmbd: 16, nHead: 2, nPositions: 32 }), { seed: 0 });
const options: ExperimentOptions = {
  task: { name: 'sst2', labels: ['0', '1'], train: [{ text: 'good', label: 1 }], eval: [{ text: 'bad', label: 0 }], notes: [] },
  model,
  modelName: 'base',
  partition: { kind: 'iid' },
  methods: ['splitfrozen'],
  devices: 2,
  rounds: 1,
  trainRows: 1,
  evalRows: 1,
  batchSize: 1,
  seqLen: 8,
  cut: 1,
  lr: 0.01,
  rank: 2,
  ordering: { kind: 'random-reshuffle' },
  avgEvery: 1,
  seed: 0,
  out: 'unused',
  command: '(test)',
};

describe('experiment provenance', () => {
  it('keeps results only under the same model, data and settings, and says what differs', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'splitfrozen-provenance-'));
    dirs.push(dir);
    expect(await keptResults(dir, 'k', {})).toEqual({ rerun: 'no results yet' });
    const made = await provenance(options);
    await writeFile(join(dir, 'results.json'), JSON.stringify({ methods: ['m'], ...made }));
    const again = await provenance({ ...options, out: 'elsewhere', command: 'other', modelName: 'renamed' });
    expect(again.key).toBe(made.key);
    expect(await keptResults(dir, again.key, again.provenance)).toEqual({ kept: { methods: ['m'], ...made } });

    const otherWeights = new Map(model.params);
    otherWeights.set(
      'h.0.ln_1.weight',
      otherWeights.get('h.0.ln_1.weight')!.map((x, i) => (i === 0 ? x + 1e-3 : x)),
    );
    const cases: Array<[Partial<ExperimentOptions>, string]> = [
      [{ model: { ...model, params: otherWeights } }, 'made with a different model'],
      [{ task: { ...options.task, train: [{ text: 'good!', label: 1 }] } as ExperimentOptions['task'] }, 'made with a different data'],
      [{ seed: 1, rounds: 2 }, 'made with a different settings'],
      [{ partition: { kind: 'dirichlet', alpha: 0.1 } }, 'made with a different partition'],
    ];
    for (const [change, why] of cases) {
      const p = await provenance({ ...options, ...change });
      expect(p.key).not.toBe(made.key);
      expect(await keptResults(dir, p.key, p.provenance)).toEqual({ rerun: why });
    }
    // Every hyperparameter the methods ran with is in the key, not only those the command line sets.
    expect(made.provenance.settings).toMatchObject({
      lora: { rank: 2, alpha: 4, dropout: 0.05, targets: ['attn.c_attn'] },
      optimizer: ADAMW_DEFAULTS,
      wireBytes: 2,
    });
    expect(made.provenance.code).toMatch(/^[0-9a-f]{64}$/);
    await writeFile(join(dir, 'results.json'), JSON.stringify({ methods: [] }));
    expect(await keptResults(dir, made.key, made.provenance)).toEqual({ rerun: 'results made before they were keyed by what made them' });
  });

  it('keys the code by the content of its sources, not its tests, and records the commit beside it', async () => {
    const tree = async (files: Record<string, string>) => {
      const root = await mkdtemp(join(tmpdir(), 'splitfrozen-code-'));
      dirs.push(root);
      await mkdir(join(root, 'src'));
      for (const [name, text] of Object.entries(files)) await writeFile(join(root, 'src', name), text);
      return root;
    };
    const first = await codeSha256(await tree({ 'method.ts': 'export const lr = 0.01;\n', 'method.test.ts': 'a test\n' }), ['src']);
    // A test or a document changes nothing; an edit of a source changes the key.
    const tests = await tree({ 'method.ts': 'export const lr = 0.01;\n', 'method.test.ts': 'another test\n', 'notes.md': 'words\n' });
    expect(await codeSha256(tests, ['src'])).toBe(first);
    expect(await codeSha256(await tree({ 'method.ts': 'export const lr = 0.02;\n', 'method.test.ts': 'a test\n' }), ['src'])).not.toBe(first);
    // compare's report only lays out numbers: a new table keeps the results; the methods' code does not.
    const experiments = async (table: string, lr = '0.01') => {
      const root = await tree({});
      await mkdir(join(root, 'experiments'));
      await writeFile(join(root, 'experiments', 'compare-report.ts'), table);
      await writeFile(join(root, 'experiments', 'methods.ts'), `export const lr = ${lr};\n`);
      return codeSha256(root, ['experiments']);
    };
    expect(await experiments('one table\n')).toBe(await experiments('two tables\n'));
    expect(await experiments('one table\n', '0.02')).not.toBe(await experiments('one table\n'));
    expect(commitOf('/')).toBe('unknown'); // not a git checkout
    expect(commitOf()).toMatch(/^[0-9a-f]{40}(\+changes)?$/);
  });
});
