/**
 * Privacy against utility: for each defence over a sweep of its setting, the strongest attack's recovery of the
 * devices' text (experiments/privacy.ts) and the task's accuracy when the server fine-tunes on the defended
 * activations as a real run does (the SplitFrozen simulation, experiments/sim, its devices applying the defence
 * with their own keys). Writes frontier.json and frontier.svg.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { textInput } from '../core/data/shard.ts';
import { syntheticSentiment } from '../core/data/synthetic.ts';
import { gpt2Config } from '../core/model/config.ts';
import { initModel } from '../core/model/init.ts';
import type { Model } from '../core/model/family.ts';
import { defenceKey } from '../core/privacy/stream.ts';
import type { Tokenizer } from '../core/tokenizer/tokenizer.ts';
import { writeFileAtomic } from '../gpu-server/model/folder.ts';
import { attackSuite, deviceSide, describeSetting, encodeTexts, ortPrefix, type DeviceSetting, type DeviceSide, type SuiteResult } from './privacy.ts';
import { frontierPlot } from './privacy-plot.ts';
import { runMethod, type SimSpec } from './sim/methods.ts';
import { setUpSimulation } from './sim/setup.ts';
import type { TaskData } from './tasks.ts';

export interface SweepOptions {
  task: TaskData;
  model: Model;
  modelName: string;
  tokenizer: Tokenizer;
  settings: DeviceSetting[];
  cut: number;
  devices: number;
  trainRows: number;
  evalRows: number;
  rounds: number;
  lr: number;
  seeds: number[];
  /** The server's LoRA targets (rank 8, alpha 16). */
  targets: string[];
  batchSize: number;
  seqLen: number;
  /** Rows of the devices' shards the attacks run on, and of public text (the evaluation split) the attacker holds. */
  victimRows: number;
  attackerRows: number;
  out: string;
  command: string;
  log: (m: string) => void;
}

export interface SweepPoint {
  setting: DeviceSetting;
  name: string;
  privacy: SuiteResult;
  /** Final-round accuracy per seed, and their mean. */
  accuracies: number[];
  accuracy: number;
}

/** The task's run as a simulation: the model with a fresh head for its labels, and the data per seed. */
function simulation(o: SweepOptions) {
  const model = { config: { ...o.model.config, numLabels: o.task.labels.length }, params: new Map([...o.model.params].filter(([k]) => k !== 'score.weight')) } as Model;
  const setup = { devices: o.devices, partition: { kind: 'iid' as const }, trainRows: o.trainRows, evalRows: o.evalRows, batchSize: o.batchSize, seqLen: o.seqLen, padTokenId: model.config.padTokenId };
  return { model, data: (seed: number) => setUpSimulation(o.task, { ...setup, seed }, o.tokenizer) };
}

/** Final-round accuracy per seed when the devices upload through `device` and the server fine-tunes on that. */
export async function accuracyUnder(o: SweepOptions, device: DeviceSide): Promise<number[]> {
  const { model, data } = simulation(o);
  const accuracies: number[] = [];
  for (const seed of o.seeds) {
    const key = defenceKey(`device key of seed ${seed} for the sweep`);
    const spec: SimSpec = {
      cut: o.cut,
      rounds: o.rounds,
      lora: { rank: 8, alpha: 16, dropout: 0.05, targets: o.targets },
      lr: o.lr,
      seed,
      ordering: { kind: 'random-reshuffle' },
      avgEvery: 1,
      wireBytes: 4,
      device: (b, run) => {
        const batch = { ids: b.ids, mask: b.mask, rows: b.rows, seq: b.seqLen };
        const hidden = run(device.inputIds(batch, key));
        device.defend(batch, hidden, key);
        return hidden;
      },
    };
    accuracies.push((await runMethod('splitfrozen', model, data(seed), spec)).rounds.at(-1)!.accuracy);
  }
  return accuracies;
}

/** The attack suite and the accuracy under each setting, on the same model, cut, rows and seeds. */
export async function sweepPoints(o: SweepOptions): Promise<SweepPoint[]> {
  const { model } = simulation(o);
  const prefix = await ortPrefix(model, o.cut);
  const attacker = encodeTexts(o.tokenizer, o.task.eval.slice(0, o.attackerRows).map(textInput), o.seqLen);
  const victims = encodeTexts(o.tokenizer, o.task.train.slice(0, o.victimRows).map(textInput), o.seqLen);
  const vocabulary = Int32Array.from(new Set(attacker.ids.filter((_, i) => attacker.mask[i])));
  const points: SweepPoint[] = [];
  try {
    for (const setting of o.settings) {
      const name = describeSetting(setting);
      const device = await deviceSide(model, prefix, setting, o.tokenizer, vocabulary);
      const privacy = await attackSuite(model, prefix.run, device, o.tokenizer, attacker, victims, { copies: 6, shortlist: 64 });
      const accuracies = await accuracyUnder(o, device);
      const accuracy = accuracies.reduce((a, b) => a + b, 0) / accuracies.length;
      o.log(`${name}: strongest attack ${privacy.strongest.attack} ${(100 * privacy.strongest.recovery).toFixed(1)}% (majority ${(100 * privacy.strongest.majority).toFixed(1)}%), accuracy ${(100 * accuracy).toFixed(1)}% [${accuracies.map((a) => (100 * a).toFixed(1)).join(', ')}]`);
      points.push({ setting, name, privacy, accuracies, accuracy });
    }
  } finally {
    await prefix.release();
  }
  return points;
}

export async function privacySweep(o: SweepOptions): Promise<{ points: SweepPoint[]; baseline: number }> {
  const points = await sweepPoints(o);
  const baseline = points.find((p) => p.setting.kind === 'output' && p.setting.defence.mechanism === 'none')?.accuracy ?? NaN;
  const summary = {
    command: o.command,
    date: new Date().toISOString(),
    task: o.task.name,
    notes: o.task.notes,
    model: { name: o.modelName, nLayer: o.model.config.nLayer, nEmbd: o.model.config.nEmbd },
    run: { cut: o.cut, devices: o.devices, trainRows: o.trainRows, evalRows: o.evalRows, rounds: o.rounds, lr: o.lr, seeds: o.seeds, batchSize: o.batchSize, seqLen: o.seqLen, lora: `r=8, alpha 16, dropout 0.05 on ${o.targets.join(', ')}` },
    attack: { victimRows: o.victimRows, attackerRows: o.attackerRows, copies: 6, shortlist: 64 },
    baselineAccuracy: baseline,
    points: points.map((p) => ({ ...p, accuracyDropPoints: 100 * (baseline - p.accuracy) })),
  };
  await mkdir(o.out, { recursive: true });
  await writeFileAtomic(join(o.out, `frontier-${o.task.name}.json`), JSON.stringify(summary, null, 2) + '\n');
  await writeFileAtomic(join(o.out, `frontier-${o.task.name}.svg`), frontierPlot(`${o.task.name}: ${o.modelName}, cut ${o.cut}`, points, baseline));
  return { points, baseline };
}

/** npm start's generated sentiment task (its generator and seed): 600 rows to train on, 400 held out. */
export function generatedTask(): TaskData {
  const rows = syntheticSentiment(1000, 7).map((r) => ({ text: r.text, label: Number(r.label) }));
  return { name: 'generated' as TaskData['name'], labels: ['0', '1'], train: rows.slice(400), eval: rows.slice(0, 400), notes: ["generated: npm start's sentiment task (core/data/synthetic.ts, seed 7): 600 training rows, 400 held out"] };
}

/** npm start's tiny random GPT-2 (5 blocks, n_embd 64, seed 0). */
export function demoModel(): Model {
  return initModel(gpt2Config({ nLayer: 5, nEmbd: 64, nHead: 4, nPositions: 64 }), { seed: 0 });
}

/** The settings swept: each defence from weak to strong, and none. */
export const SWEEP: DeviceSetting[] = [
  { kind: 'output', defence: { mechanism: 'none' } },
  ...[4096, 256, 64, 32, 16, 8, 4].map((epsilon): DeviceSetting => ({ kind: 'output', defence: { mechanism: 'gaussian', epsilon, delta: 1e-5 } })),
  ...[1024, 256, 64, 32, 16, 8].map((epsilon): DeviceSetting => ({ kind: 'output', defence: { mechanism: 'metric', epsilon } })),
  ...[32, 16, 8, 4, 2].map((epsilon): DeviceSetting => ({ kind: 'sanitise', epsilon })),
];

