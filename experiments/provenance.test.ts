import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { gpt2Config } from '../core/model/gpt2/config.ts';
import { initModel } from '../core/model/gpt2/init.ts';
import type { ExperimentOptions } from './experiment.ts';
import { ADAMW_DEFAULTS } from '../gpu-server/train/adamw.ts';
import { codeFiles, codeSha256, commitOf, keptResults, provenance } from './provenance.ts';

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

  it('keys the code by the content of the files experiments load, not their tests, types or the rest of the tree', async () => {
    const sources = {
      'experiments/compare.ts': "import { lr } from './methods.ts';\nimport { table } from './compare-report.ts';\nconsole.log(table(lr));\n",
      'experiments/compare-report.ts': 'export const table = (x: number) => `${x}`;\n',
      'experiments/methods.ts': [
        "import type { Spec } from '../server/spec.ts';",
        "export { step } from './step.ts';",
        "export const worker = new URL('./worker.cjs', import.meta.url);",
        "export const later = () => import('./later.ts');",
        'export const lr: Spec = 0.01;',
      ].join('\n'),
      'experiments/step.ts': 'export const step = 1;\n',
      'experiments/worker.cjs': 'module.exports = 1;\n',
      'experiments/later.ts': 'export const later = 1;\n',
      'experiments/methods.test.ts': 'a test\n',
      'server/spec.ts': 'export type Spec = number;\n',
      'server/rounds.ts': 'export const rounds = 1;\n',
    };
    const tree = async (changes: Record<string, string> = {}) => {
      const root = await mkdtemp(join(tmpdir(), 'splitfrozen-code-'));
      dirs.push(root);
      for (const [file, text] of Object.entries({ ...sources, ...changes })) {
        await mkdir(dirname(join(root, file)), { recursive: true });
        await writeFile(join(root, file), text);
      }
      return root;
    };
    const entries = ['experiments/compare.ts'];
    const first = await codeSha256(await tree(), entries);
    expect([...(await codeFiles(await tree(), entries)).keys()].sort()).toEqual([
      'experiments/compare-report.ts',
      'experiments/compare.ts',
      'experiments/later.ts',
      'experiments/methods.ts',
      'experiments/step.ts',
      'experiments/worker.cjs',
    ]);
    // What no experiment runs changes nothing: a test, a type-only import, the rest of the tree, compare's report
    // (it lays out numbers already made).
    for (const unloaded of ['experiments/methods.test.ts', 'server/spec.ts', 'server/rounds.ts', 'experiments/compare-report.ts', 'experiments/compare.ts'])
      expect(await codeSha256(await tree({ [unloaded]: `${sources[unloaded as keyof typeof sources]}// edited\n` }), entries), unloaded).toBe(first);
    // What they load, followed through imports, re-exports, dynamic imports and files opened beside them, changes it.
    for (const loaded of ['experiments/methods.ts', 'experiments/step.ts', 'experiments/worker.cjs', 'experiments/later.ts'])
      expect(await codeSha256(await tree({ [loaded]: `${sources[loaded as keyof typeof sources]}// edited\n` }), entries), loaded).not.toBe(first);
    await expect(codeSha256(await tree({ 'experiments/methods.ts': "import { x } from './gone.ts';\n" }), entries)).rejects.toThrow(
      "experiments/gone.ts: not found, yet an experiment's source loads it",
    );
    // In this repository: the trainer, both families and both backends are keyed; the server's rounds and API are not.
    const repository = [...(await codeFiles()).keys()];
    expect(repository).toEqual(
      expect.arrayContaining([
        'experiments/sim/methods.ts',
        'gpu-server/train/trainer.ts',
        'core/model/gpt2/family.ts',
        'core/model/llama/family.ts',
        'gpu-server/backends/tfjs/wasm-pthread-worker.cjs',
      ]),
    );
    expect(repository.filter((f) => f.startsWith('gpu-server/rounds/') || f.startsWith('gpu-server/api/'))).toEqual([]);
    expect(commitOf('/')).toBe('unknown'); // not a git checkout
    expect(commitOf()).toMatch(/^[0-9a-f]{40}(\+changes)?$/);
  });
});
