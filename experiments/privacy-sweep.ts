/**
 * Privacy against utility: for each defence over a sweep of its setting, the strongest attack's recovery of the
 * devices' text (experiments/privacy.ts) and the task's accuracy when the server fine-tunes on the defended
 * activations as a real run does (the SplitFrozen simulation, experiments/sim, its devices applying the defence
 * with their own keys). Writes frontier.json and frontier.svg.
 */
import { EVERY_DEVICE } from './sim/participation.ts';
import { DEFAULT_PROX_MU } from './experiment-options.ts';
import { ADAMW_DEFAULTS } from '../gpu-server/train/adamw.ts';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { textInput } from '../core/data/shard.ts';
import { syntheticSentiment } from '../core/data/synthetic.ts';
import { gpt2Config } from '../core/model/gpt2/config.ts';
import { initModel } from '../core/model/gpt2/init.ts';
import type { Model } from '../core/model/family.ts';
import { defenceKey } from '../core/privacy/stream.ts';
import { MIN_GROUP_SIZE } from '../core/privacy/groups.ts';
import type { Tokenizer } from '../core/tokenizer/tokenizer.ts';
import { writeFileAtomic } from '../gpu-server/model-folder/folder.ts';
import { attackSuite, deviceSide, describeSetting, encodeTexts, ortPrefix, publicText, type DeviceSetting, type DeviceSide } from './privacy.ts';
import { frontierPlot, type SweepPoint } from './privacy-plot.ts';

export type { SweepPoint } from './privacy-plot.ts';
import { runMethod, type SimSpec } from './sim/methods.ts';
import { setUpGenerationSimulation, setUpSimulation } from './sim/setup.ts';
import type { GenerationTaskData, TaskData } from './tasks.ts';
import type { Example } from '../core/data/shard.ts';
import type { GenerationExample } from '../core/data/generation.ts';
import type { TextInput } from '../core/tokenizer/tokenizer.ts';

export interface SweepOptions {
  task: TaskData | GenerationTaskData;
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
  /**
   * Public text of the task's kind that groups of similar tokens are built from (and the attacker's prior): the
   * task's evaluation split unless given.
   */
  publicTexts?: TextInput[];
  out: string;
  command: string;
  log: (m: string) => void;
}

const generation = (task: SweepOptions['task']): task is GenerationTaskData => !('labels' in task);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
/** The text a row's device holds and the server may see as activations: a classification row, or a prompt. */
export const textOf = (r: Example | GenerationExample): TextInput => ('prompt' in r ? r.prompt : textInput(r));

/** The task's run as a simulation: the model (with a fresh head for a classification task's labels) and the data per seed. */
function simulation(o: SweepOptions) {
  const task = o.task;
  const setup = {
    devices: o.devices,
    partition: { kind: 'iid' as const },
    trainRows: o.trainRows,
    evalRows: o.evalRows,
    batchSize: o.batchSize,
    seqLen: o.seqLen,
    padTokenId: o.model.config.padTokenId,
  };
  if (generation(task)) return { model: o.model, data: (seed: number) => setUpGenerationSimulation(task, o.tokenizer, { ...setup, seed, generate: 0 }) };
  const model = {
    config: { ...o.model.config, numLabels: task.labels.length },
    params: new Map([...o.model.params].filter(([k]) => k !== 'score.weight')),
  } as Model;
  return { model, data: (seed: number) => setUpSimulation(task, { ...setup, seed }, o.tokenizer) };
}

/** Final-round accuracy and held-out loss per seed when the devices upload through `device` and the server fine-tunes on that. */
export async function utilityUnder(o: SweepOptions, device: DeviceSide): Promise<{ accuracies: number[]; losses: number[] }> {
  const { model, data } = simulation(o);
  const [accuracies, losses]: number[][] = [[], []];
  for (const seed of o.seeds) {
    const key = defenceKey(`device key of seed ${seed} for the sweep`);
    const spec: SimSpec = {
      cut: o.cut,
      rounds: o.rounds,
      lora: { rank: 8, alpha: 16, dropout: 0.05, targets: o.targets },
      lr: o.lr,
      optimizer: ADAMW_DEFAULTS,
      seed,
      ordering: { kind: 'random-reshuffle' },
      avgEvery: 1,
      proxMu: DEFAULT_PROX_MU,
      participation: EVERY_DEVICE,
      wireBytes: 4,
      device: (b, run) => {
        const batch = { ids: b.ids, mask: b.mask, rows: b.rows, seq: b.seqLen };
        const hidden = run(device.inputIds(batch, key));
        device.defend(batch, hidden, key);
        return hidden;
      },
    };
    const last = (await runMethod('splitfrozen', model, data(seed), spec, undefined, o.tokenizer)).rounds.at(-1)!;
    accuracies.push(last.accuracy);
    losses.push(last.loss);
  }
  return { accuracies, losses };
}

/** The attack suite and the accuracy under each setting, on the same model, cut, rows and seeds. */
export async function sweepPoints(o: SweepOptions): Promise<SweepPoint[]> {
  const { model } = simulation(o);
  const prefix = await ortPrefix(model, o.cut);
  const rows = (split: Array<Example | GenerationExample>, n: number) => encodeTexts(o.tokenizer, split.slice(0, n).map(textOf), o.seqLen);
  const victims = rows(o.task.train, o.victimRows);
  const points: SweepPoint[] = [];
  try {
    const more = o.publicTexts ? encodeTexts(o.tokenizer, o.publicTexts, o.seqLen) : rows(o.task.eval, o.task.eval.length);
    const pub = await publicText(prefix.run, o.tokenizer, rows(o.task.eval, o.attackerRows), model.config.nEmbd, more);
    for (const setting of o.settings) {
      const name = describeSetting(setting);
      const device = await deviceSide(model, prefix, setting, o.tokenizer, pub);
      const privacy = await attackSuite(model, prefix.run, device, o.tokenizer, pub, victims, { copies: 6, shortlist: 64 });
      const { accuracies, losses } = await utilityUnder(o, device);
      const [accuracy, loss] = [mean(accuracies), mean(losses)];
      const utility = generation(o.task)
        ? `held-out loss ${loss.toFixed(3)} [${losses.map((l) => l.toFixed(3)).join(', ')}]`
        : `accuracy ${(100 * accuracy).toFixed(1)}% [${accuracies.map((a) => (100 * a).toFixed(1)).join(', ')}]`;
      o.log(
        `${name}: strongest attack ${privacy.strongest.attack} ${(100 * privacy.strongest.recovery).toFixed(1)}% (majority ${(100 * privacy.strongest.majority).toFixed(1)}%), ${utility}`,
      );
      points.push({ setting, name, privacy, accuracies, accuracy, losses, loss });
    }
  } finally {
    await prefix.release();
  }
  return points;
}

export async function privacySweep(o: SweepOptions): Promise<{ points: SweepPoint[]; baseline: number }> {
  const points = await sweepPoints(o);
  const undefended = points.find((p) => p.setting.kind === 'output' && p.setting.defence.mechanism === 'none');
  const baseline = undefended?.accuracy ?? NaN;
  const summary = {
    command: o.command,
    date: new Date().toISOString(),
    task: o.task.name,
    notes: o.task.notes,
    model: { name: o.modelName, nLayer: o.model.config.nLayer, nEmbd: o.model.config.nEmbd },
    run: {
      cut: o.cut,
      devices: o.devices,
      trainRows: o.trainRows,
      evalRows: o.evalRows,
      rounds: o.rounds,
      lr: o.lr,
      seeds: o.seeds,
      batchSize: o.batchSize,
      seqLen: o.seqLen,
      lora: `r=8, alpha 16, dropout 0.05 on ${o.targets.join(', ')}`,
    },
    attack: { victimRows: o.victimRows, attackerRows: o.attackerRows, copies: 6, shortlist: 64 },
    utility: generation(o.task)
      ? "the held-out completions' next-token loss (accuracy: none, no answers generated)"
      : 'classification accuracy, and the held-out loss',
    baselineAccuracy: baseline,
    baselineLoss: undefended?.loss,
    points: points.map((p) => ({ ...p, accuracyDropPoints: 100 * (baseline - p.accuracy), lossIncrease: p.loss - (undefended?.loss ?? NaN) })),
  };
  await mkdir(o.out, { recursive: true });
  await writeFileAtomic(join(o.out, `frontier-${o.task.name}.json`), JSON.stringify(summary, null, 2) + '\n');
  // The plot puts accuracy against recovery: a generation task's loss is in the JSON and the README's table.
  if (!generation(o.task))
    await writeFileAtomic(join(o.out, `frontier-${o.task.name}.svg`), frontierPlot(`${o.task.name}: ${o.modelName}, cut ${o.cut}`, points, baseline));
  return { points, baseline };
}

/** npm start's generated sentiment task (its generator and seed): 600 rows to train on, 400 held out. */
export function generatedTask(): TaskData {
  const rows = syntheticSentiment(1000, 7).map((r) => ({ text: r.text, label: Number(r.label) }));
  return {
    name: 'generated' as TaskData['name'],
    labels: ['0', '1'],
    train: rows.slice(400),
    eval: rows.slice(0, 400),
    notes: ["generated: npm start's sentiment task (core/data/synthetic.ts, seed 7): 600 training rows, 400 held out"],
  };
}

/**
 * Public text of the generated task's kind, apart from every split of npm start and the sweep (another seed of the
 * generator): what groups of similar tokens are built from. 1,000 rows: from 200, words of both polarities share groups.
 */
export function publicGeneratedText(): string[] {
  return syntheticSentiment(1000, 11).map((r) => r.text);
}

/** npm start's tiny random GPT-2 (5 blocks, n_embd 64, seed 0). */
export function demoModel(): Model {
  return initModel(gpt2Config({ nLayer: 5, nEmbd: 64, nHead: 4, nPositions: 64 }), { seed: 0 });
}

/**
 * The group size npm start's owners build with: groups of 8 (the least a device takes) leave the task's frequent
 * filler words in small groups, where the best guess is right one time in ten; from 12, the two polarities share a
 * group (docs/privacy/README.md).
 */
export const GROUPS_DEFAULT_SIZE = 10;

/** npm start's owners' default on the generated task: randomised response at epsilon 0 in groups built from public text. */
export const GROUPS_DEFAULT: DeviceSetting = { kind: 'groups', epsilon: 0, minSize: GROUPS_DEFAULT_SIZE };

/** The settings swept: each defence from weak to strong, and none. */
export const SWEEP: DeviceSetting[] = [
  { kind: 'output', defence: { mechanism: 'none' } },
  ...[4096, 256, 64, 32, 16, 8, 4].map((epsilon): DeviceSetting => ({ kind: 'output', defence: { mechanism: 'gaussian', epsilon, delta: 1e-5 } })),
  ...[1024, 256, 64, 32, 16, 8].map((epsilon): DeviceSetting => ({ kind: 'output', defence: { mechanism: 'metric', epsilon } })),
  ...[32, 16, 8, 4, 2].map((epsilon): DeviceSetting => ({ kind: 'sanitise', epsilon })),
  ...[2, 1, 0].map((epsilon): DeviceSetting => ({ kind: 'groups', epsilon, minSize: MIN_GROUP_SIZE })),
  ...[1, 0.5, 0].map((epsilon): DeviceSetting => ({ kind: 'groups', epsilon, minSize: GROUPS_DEFAULT_SIZE })),
  { kind: 'groups', epsilon: 0, minSize: 12 },
];
