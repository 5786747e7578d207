import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { syntheticSentiment } from '../core/data/synthetic.ts';
import { gpt2Config } from '../core/model/gpt2/config.ts';
import { initModel } from '../core/model/gpt2/init.ts';
import { initBackend } from '../gpu-server/backends/tfjs/runtime.ts';
import { localTempDir } from '../infra/local/paths.ts';
import { sweepLearningRates, validationTask } from './sweep.ts';
import type { TaskData } from './tasks.ts';
import type { ExperimentOptions } from './experiment-options.ts';

const rows = syntheticSentiment(240, 4).map((r) => ({ text: r.text, label: Number(r.label) }));
const task: TaskData = { name: 'sst2', labels: ['0', '1'], train: rows.slice(40), eval: rows.slice(0, 40), notes: [] };
let dir: string;
beforeAll(async () => {
  await initBackend('wasm');
  dir = await localTempDir('test-sweep');
});
afterAll(() => (dir ? rm(dir, { recursive: true, force: true }) : undefined));

describe('learning rates chosen on a validation split', () => {
  it('carves validation rows out of the training rows, never out of the test rows', () => {
    const v = validationTask(task);
    expect(v.eval).toHaveLength(40);
    expect(v.train).toHaveLength(160);
    const key = (r: { text: string }) => r.text;
    expect(new Set([...v.train, ...v.eval].map(key))).toEqual(new Set(task.train.map(key)));
    expect(v.train.some((r) => v.eval.includes(r))).toBe(false);
    expect(v.eval.some((r) => task.eval.includes(r))).toBe(false);
    expect(validationTask(task).eval).toEqual(v.eval);
  });

  const base = (): ExperimentOptions => ({
    task,
    model: initModel(gpt2Config({ nLayer: 3, nEmbd: 32, nHead: 4, nPositions: 32 }), { seed: 2 }),
    modelName: 'tiny',
    partition: { kind: 'iid' },
    methods: ['splitfrozen'],
    devices: 2,
    rounds: 3,
    trainRows: 160,
    evalRows: 40,
    batchSize: 8,
    seqLen: 16,
    cut: 1,
    lr: 0.01,
    rank: 4,
    ordering: { kind: 'random-reshuffle' },
    avgEvery: 3,
    seed: 0,
    out: join(dir, 'sweep'),
    command: '(test)',
    log: () => {},
  });

  it("picks each method's rate by its final validation accuracy", async () => {
    const sweep = await sweepLearningRates(base(), [1e-7, 0.02]);
    const scores = sweep.accuracy.splitfrozen!;
    expect(Object.keys(scores)).toEqual(['1e-7', '0.02']);
    // A rate too small to move the adapters loses to one that learns the task.
    expect(scores['0.02']!).toBeGreaterThan(scores['1e-7']!);
    expect(sweep.chosen).toEqual({ splitfrozen: 0.02 });
  });

  it("sweeps FedProx's mu at its chosen rate, reusing that rate's run for the mu it ran with", async () => {
    const sweep = await sweepLearningRates({ ...base(), methods: ['fedprox'], out: join(dir, 'prox') }, [0.02], false, [0.01, 1000]);
    const { accuracy, chosen } = sweep.proxMu!;
    expect(new Set(Object.keys(accuracy))).toEqual(new Set(['0.01', '1000']));
    expect(accuracy['0.01']).toBe(sweep.accuracy.fedprox!['0.02']);
    expect(chosen).toBe(accuracy['1000']! > accuracy['0.01']! ? 1000 : 0.01);
  });
});
