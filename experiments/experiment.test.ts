import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { syntheticSentiment } from '../core/data/synthetic.ts';
import { gpt2Config } from '../core/model/gpt2/config.ts';
import { initModel } from '../core/model/gpt2/init.ts';
import { initBackend } from '../gpu-server/backends/tfjs/runtime.ts';
import { localTempDir } from '../infra/local/paths.ts';
import { parseShard } from '../core/data/shard.ts';
import { partition } from '../core/data/partition.ts';
import { runExperiment } from './experiment.ts';
import { writeShardFiles } from './shards.ts';
import { loadBaseModel, parseMethods, parsePartition } from './options.ts';
import type { GenerationTaskData, TaskData } from './tasks.ts';
import { gsm8kExample } from '../core/data/generation.ts';
import { writeModelFolder } from '../gpu-server/model-folder/folder.ts';

let dir: string;
beforeAll(async () => {
  await initBackend('wasm');
  dir = await localTempDir('test-experiment');
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('an experiment', () => {
  it('writes results.json, a markdown table with the label histogram, and an SVG plot with a line per method', async () => {
    const rows = syntheticSentiment(160, 2).map((r) => ({ text: r.text, label: Number(r.label) }));
    // Three labels against a base model whose own head has two: the experiment gives the task a new head.
    const task: TaskData = {
      name: 'mnli',
      labels: ['0', '1', 'unused'],
      train: rows.slice(40),
      eval: rows.slice(0, 40),
      notes: ['a note every output must carry'],
    };
    const out = join(dir, 'exp');
    await runExperiment({
      task,
      model: initModel(gpt2Config({ nLayer: 2, nEmbd: 16, nHead: 2, nPositions: 32 }), { seed: 0 }),
      modelName: 'tiny',
      partition: parsePartition('dirichlet:0.5'),
      methods: parseMethods('splitfrozen,fedlora'),
      devices: 3,
      rounds: 2,
      trainRows: 96,
      evalRows: 40,
      batchSize: 8,
      seqLen: 24,
      cut: 1,
      lr: 0.01,
      rank: 2,
      ordering: { kind: 'grab' },
      avgEvery: 4,
      seed: 0,
      out,
      command: 'npm run experiment -- (test)',
      log: () => {},
    });
    const results = JSON.parse(await readFile(join(out, 'results.json'), 'utf8'));
    expect(results.methods.map((m: { method: string }) => m.method)).toEqual(['splitfrozen', 'fedlora']);
    expect(results.methods[0].rounds).toHaveLength(2);
    expect(results.histogram.flat().reduce((a: number, b: number) => a + b, 0)).toBe(96);
    expect(results.histogram[0]).toHaveLength(3);
    expect(results.notes).toEqual(['a note every output must carry']);
    const evalLabels = rows.slice(0, results.evalRows).map((r) => r.label);
    expect(results.majorityClass).toBe(Math.max(...[0, 1].map((l) => evalLabels.filter((x) => x === l).length)) / evalLabels.length);
    const md = await readFile(join(out, 'results.md'), 'utf8');
    expect(md).toContain('Note: a note every output must carry');
    expect(md).toMatch(/\| splitfrozen \| \d+\.\d% \|/);
    const svg = await readFile(join(out, 'accuracy.svg'), 'utf8');
    expect(svg.match(/<polyline/g)).toHaveLength(2);
    expect(svg).toContain('>fedlora</text>');
    // Modelled time: from the measured server step and each device profile, cumulative over rounds.
    const time = results.modelledTime;
    expect(time.serverGflops).toBeGreaterThan(0);
    for (const profile of ['phone', 'laptop']) {
      for (const method of ['splitfrozen', 'fedlora']) {
        const t = time.byMethod[method][profile];
        expect(t).toHaveLength(2);
        expect(t[1]).toBeGreaterThan(t[0]);
      }
      expect(time.splitfrozenStopAndWait[profile][1]).toBeGreaterThanOrEqual(time.byMethod.splitfrozen[profile][1]);
    }
    expect(time.byMethod.fedlora.workers).toBeNull(); // a Worker runs no backward pass
    expect(md).toMatch(/\| fedlora \| [\d.e+]+ s \| [\d.e+]+ s \| does not fit \|/);
    expect((await readFile(join(out, 'time-phone.svg'), 'utf8')).match(/<polyline/g)).toHaveLength(2);
  });

  it('runs GSM8K-style generation with every method on a Llama: completion loss, exact match, costs per method', async () => {
    const { model, tokenizer } = await loadBaseModel('random', 'generation');
    const problem = (i: number) => gsm8kExample(`What is ${i} plus ${i}?`, `${i} + ${i} = ${2 * i}\n#### ${2 * i}`);
    const task: GenerationTaskData = {
      name: 'gsm8k',
      train: Array.from({ length: 12 }, (_, i) => problem(i)),
      eval: [problem(50), problem(51)],
      notes: ['split note'],
    };
    const out = join(dir, 'gsm8k');
    const options = {
      task,
      model,
      tokenizer,
      modelName: 'random',
      partition: parsePartition('iid'),
      methods: parseMethods('splitfrozen,fedlora,splitlora,splitfrozen-parallel'),
      devices: 2,
      rounds: 1,
      trainRows: 12,
      evalRows: 2,
      batchSize: 4,
      seqLen: 48,
      cut: 2,
      lr: 0.01,
      rank: 2,
      ordering: { kind: 'random-reshuffle' } as const,
      avgEvery: 2,
      seed: 0,
      out,
      command: '(test)',
      log: () => {},
    };
    await runExperiment(options);
    const results = JSON.parse(await readFile(join(out, 'results.json'), 'utf8'));
    expect(results.methods.map((m: { method: string }) => m.method)).toEqual(['splitfrozen', 'fedlora', 'splitlora', 'splitfrozen-parallel']);
    expect(results.majorityClass).toBeUndefined();
    expect(results.accuracyIs).toMatch(/^exact match of the final number over the first 2 held-out problems/);
    for (const m of results.methods) {
      expect(m.rounds[0].loss).toBeGreaterThan(5); // near ln(128256) for a random model, and finite
      expect(m.rounds[0].loss).toBeLessThan(13);
      expect(m.rounds[0].accuracy).toBeGreaterThanOrEqual(0);
    }
    const [splitfrozen, fedlora, splitlora] = results.methods;
    expect(splitfrozen.deviceBackwardFlops).toBe(0);
    expect(fedlora.deviceBackwardFlops).toBeGreaterThan(0);
    expect(splitlora.cutGradientNorm).toBeGreaterThan(0);
    expect(splitfrozen.cutGradientNorm).toBe(0);
    await expect(runExperiment({ ...options, partition: parsePartition('extreme') })).rejects.toThrow(
      "partition 'extreme' skews labels; a generation task has none: use iid or quantity:ALPHA",
    );
  });

  it('classifies with a Llama as with GPT-2 (no family is special), and refuses a GPT-2 for generation', async () => {
    const { model, tokenizer } = await loadBaseModel('random', 'generation');
    const rows = syntheticSentiment(48, 3).map((r) => ({ text: r.text, label: Number(r.label) }));
    const task: TaskData = { name: 'sst2', labels: ['0', '1'], train: rows.slice(16), eval: rows.slice(0, 16), notes: [] };
    const out = join(dir, 'llama-sst2');
    await runExperiment({
      task,
      model,
      tokenizer,
      modelName: 'random',
      partition: parsePartition('iid'),
      methods: parseMethods('splitfrozen'),
      devices: 2,
      rounds: 1,
      trainRows: 32,
      evalRows: 16,
      batchSize: 8,
      seqLen: 24,
      cut: 2,
      lr: 0.01,
      rank: 2,
      ordering: { kind: 'random-reshuffle' },
      avgEvery: 2,
      seed: 0,
      out,
      command: '(test)',
      log: () => {},
    });
    const results = JSON.parse(await readFile(join(out, 'results.json'), 'utf8'));
    expect(results.methods[0].rounds[0].loss).toBeGreaterThan(0);
    expect(results.methods[0].rounds[0].accuracy * 16).toBeCloseTo(Math.round(results.methods[0].rounds[0].accuracy * 16), 9);
    const gpt2Dir = join(dir, 'gpt2-folder');
    await writeModelFolder(gpt2Dir, initModel(gpt2Config({ nLayer: 2, nEmbd: 16, nHead: 2, nPositions: 32 }), { seed: 0 }));
    await expect(loadBaseModel(gpt2Dir, 'generation')).rejects.toThrow(
      `${gpt2Dir} is a GPT-2 model; a generation task needs a Llama model (every family runs the classification tasks)`,
    );
    expect((await loadBaseModel(gpt2Dir)).model.config.modelType).toBe('gpt2');
  });

  it('refuses unknown methods and partitions by name', () => {
    expect(() => parseMethods('splitfrozen,fedavg')).toThrow("unknown method 'fedavg'");
    expect(() => parsePartition('dirichlet:0')).toThrow(/partition 'dirichlet:0' is not/);
  });
});

describe('shard files', () => {
  it("are accepted by the device worker's validator, row for row", async () => {
    const rows = [
      { text: 'a premise', textPair: 'a hypothesis', label: 2 },
      { text: 'another', textPair: 'pair', label: 0 },
      { text: 'third', textPair: 'one', label: 1 },
    ];
    const labels = ['entailment', 'neutral', 'contradiction'];
    const files = await writeShardFiles(join(dir, 'shards'), rows, partition([2, 0, 1], 3, { kind: 'extreme' }, 0), labels);
    const back = await Promise.all(files.map(async (f) => parseShard(await readFile(f), 'jsonl', labels)));
    expect(back.flat().sort((a, b) => a.text.localeCompare(b.text))).toEqual([...rows].sort((a, b) => a.text.localeCompare(b.text)));
  });
});
