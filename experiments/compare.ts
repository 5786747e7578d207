/**
 * npm run compare — the whole comparison, on small models, in pieces that each keep their results:
 * - the generated topic task (the task with signal: experiments/tasks.ts), 6 devices: SplitFrozen (device after
 *   device, and its batches interleaved), FedLoRA, SplitLoRA, the parallel ablation, FedSGD, FedProx, SCAFFOLD and the
 *   centralized bound under IID and extreme partitions over 5 seeds, each method at the learning rate
 *   (and FedProx at the mu) a validation sweep chose; client orderings at equal work; each paper claim decided by a
 *   paired test across the seeds, Holm-corrected; modelled training time per device class with the break-even
 *   device counts;
 * - many devices (50 by default): a share sampled each round, some dropping out, stragglers in the time model;
 * - SST-2, MRPC and MNLI under the same partitions (one seed), where asked with --tasks.
 * Every experiment is kept or run again by its provenance (experiments/provenance.ts), so a piece run alone
 * (--partitions, --many-devices 0, --tasks) is kept by the full command, which then only writes --out/README.md.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import { basename, join } from 'node:path';
import { describePartition, type PartitionSpec } from '../core/data/partition.ts';
import { writeFileAtomic } from '../gpu-server/model-folder/folder.ts';
import type { OrderingSpec } from '../gpu-server/ordering/ordering.ts';
import { initBackend } from '../gpu-server/backends/tfjs/runtime.ts';
import { cliArgs, int, run } from '../infra/cli.ts';
import { modelledTime, timeTable, type ExperimentOptions } from './experiment.ts';
import { loadBaseModel, parseMethods, parseParticipation, parsePartition } from './options.ts';
import { METHODS } from './sim/accounting.ts';
import { runSeeds, type SeedStudy } from './study.ts';
import { readTask, type TaskName } from './tasks.ts';
import { sweepLearningRates } from './sweep.ts';
import { glueRow, INTERLEAVED, meanCurves, topicSection, type TopicStudy } from './compare-report.ts';
import { accuracyPlot } from './report.ts';
import { DEVICE_PROFILES } from './device-time.ts';

const USAGE = `usage: npm run compare -- [--out docs/experiments] [--model .local/models/pretrained] [--topics-model random] [--topics-rounds 8] [--tasks topics]
       [--methods ${METHODS.join(',')}] [--seeds 0,1,2,3,4]
       [--partitions iid,extreme] [--many-devices 50] [--participation 0.5] [--dropout 0.1]
       [--rounds 4] [--train-rows 720] [--eval-rows 300] [--devices 6] [--sweep-lrs 0.003,0.01,0.03|none] [--fresh]
--seeds applies to the topic task, which runs on --topics-model (a random small GPT-2 unless given: see the README it
writes); the GLUE tasks (--tasks topics,sst2,mrpc,mnli) run seed 0 on --model. An experiment whose results.json in
--out was made from the same base model (by SHA-256), data, partition, methods, settings and code is kept; any
difference runs it again, as --fresh does. On the topic task each method's learning rate (and FedProx's mu) is first
chosen on a validation split carved from the training rows (seed 0), and every seed then trains at it; the test
split is touched only by those runs. --many-devices N adds the topic task on N devices (Dirichlet(0.1), 32 rows each)
with --participation of them sampled a round and --dropout of those dropping out, each method at the rate its own
validation sweep chose; 0 leaves it out.`;
const args = cliArgs(USAGE, {
  out: { type: 'string', default: 'docs/experiments' },
  model: { type: 'string', default: '.local/models/pretrained' },
  'topics-model': { type: 'string', default: 'random' },
  'topics-rounds': { type: 'string' },
  tasks: { type: 'string', default: 'topics' },
  methods: { type: 'string', default: METHODS.join(',') },
  seeds: { type: 'string', default: '0,1,2,3,4' },
  partitions: { type: 'string', default: 'iid,extreme' },
  'many-devices': { type: 'string', default: '50' },
  participation: { type: 'string', default: '0.5' },
  dropout: { type: 'string', default: '0.1' },
  'sweep-lrs': { type: 'string', default: '0.003,0.01,0.03' },
  rounds: { type: 'string' },
  'train-rows': { type: 'string' },
  'eval-rows': { type: 'string' },
  devices: { type: 'string' },
  datasets: { type: 'string', default: '../shared/datasets' },
  fresh: { type: 'boolean' },
});
/** The paper's device-compute figure, worked plainly. */
const DEVICE_COMPUTE_ARITHMETIC =
  "The arithmetic of the paper's -87.5% device compute, plainly: SplitFrozen's devices run only the forward pass, and only in the round they first deliver (later rounds reuse the activations). A reduction r in a round therefore becomes 1 - (1 - r) / R over R rounds: against a device's forward and backward of about twice its forward (LoRA's frozen weights need no weight gradients), r is about -50% a round, which over 4 rounds reads 1 - 0.5 / 4 = -87.5%. The per-round figure is the one to set beside a method that must recompute; the modelled times above already count both.\n";

/** The many-devices study's partition, and the rows each of its devices holds. */
const MANY_PARTITION: PartitionSpec = { kind: 'dirichlet', alpha: 0.1 };
const MANY_ROWS_PER_DEVICE = 32;
/** A real server's training throughput: onnxruntime on these 2 cores, GPT-2 small's step at 512 tokens/s x 293 MFLOP a token. */
const SERVER_GFLOPS = 150;
const SERVER_SOURCE =
  "onnxruntime (ort-cpu) on these 2 cores as bench:train measured it (docs/benchmarks/train-2026-12-03-ort-cpu-llama-1b-generation.json: GPT-2 small's server step, 512 tokens/s at 293 MFLOP a token)";
const folder = (p: PartitionSpec) =>
  describePartition(p)
    .replace(/[^a-z0-9.]+/gi, '-')
    .replace(/-$/, '');

run(async () => {
  // Only the GLUE tasks run on the pretrained base.
  const glue = args.tasks!.split(',').some((t) => t !== 'topics');
  if (glue && !existsSync(join(args.model!, 'config.json'))) {
    process.stderr.write(`[compare] no base model at ${args.model}: pretraining one (npm run pretrain -- --out ${args.model})\n`);
    execFileSync(process.execPath, ['--import', 'tsx', 'experiments/pretrain-cli.ts', '--out', args.model!], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  await initBackend('auto');
  const pretrained = glue ? await loadBaseModel(args.model!) : undefined;
  const methods = parseMethods(args.methods!);
  const seeds = args.seeds!.split(',').map((s) => int('seeds', s, 0));
  const rates = args['sweep-lrs'] === 'none' ? [] : args['sweep-lrs']!.split(',').map(Number);
  if (rates.some((r) => !(r > 0 && r < 1))) throw new Error(`--sweep-lrs lists learning rates in (0, 1), or is none: got '${args['sweep-lrs']}'`);
  const devices = int('devices', args.devices, 6);
  const topicsBase = await loadBaseModel(args['topics-model']!);
  const options = (task: ExperimentOptions['task'], partition: PartitionSpec, out: string): ExperimentOptions => ({
    task,
    ...(task.name === 'topics'
      ? { model: topicsBase.model, tokenizer: topicsBase.tokenizer, modelName: topicsBase.name }
      : { model: pretrained!.model, tokenizer: pretrained!.tokenizer, modelName: pretrained!.name }),
    partition,
    methods,
    devices,
    rounds: task.name === 'topics' ? int('topics-rounds', args['topics-rounds'], 8) : int('rounds', args.rounds, 4),
    trainRows: int('train-rows', args['train-rows'], 720),
    evalRows: int('eval-rows', args['eval-rows'], 300),
    batchSize: 16,
    seqLen: 64,
    cut: 2,
    lr: 0.003,
    rank: 8,
    ordering: { kind: 'random-reshuffle' },
    avgEvery: 10,
    seed: 0,
    out,
    command: `npm run compare -- ${process.argv.slice(2).join(' ')}`.trim(),
  });
  const sections: string[] = [];
  const notes = new Set<string>();
  let minutes = 0;
  const glueRows: string[] = [];
  const partitions = args.partitions!.split(',').map(parsePartition);
  const manyDevices = int('many-devices', args['many-devices'], 0);
  const fresh = args.fresh;
  const swept = new Set<string>();
  const sweepFor = async (base: ExperimentOptions) => {
    if (!rates.length) return undefined;
    const sweep = await sweepLearningRates(base, rates, fresh);
    if (!swept.has(base.out)) minutes += await minutesUnder(join(base.out, 'validation'));
    swept.add(base.out);
    return sweep;
  };
  /** Every method at its chosen rate over the seeds, and SplitFrozen's client orderings and interleaved batches. */
  const topicStudy = async (base: ExperimentOptions, orderings: OrderingSpec[], label?: string): Promise<TopicStudy> => {
    const sweep = await sweepFor(base);
    const splitfrozenLr = sweep?.chosen.splitfrozen ?? base.lr;
    const methodsStudy = await runSeeds({ ...base, lrByMethod: sweep?.chosen, proxMu: sweep?.proxMu?.chosen }, seeds, { fresh });
    minutes += methodsStudy.minutes;
    // Client orderings for SplitFrozen at equal work: the same batches, only the order of the devices changes.
    // The methods' runs use random reshuffling already: their SplitFrozen is that ordering's.
    const byOrdering: Record<string, SeedStudy> = {};
    const splitfrozenOnly = (out: string, o: Partial<ExperimentOptions>): ExperimentOptions => ({
      ...base,
      out: join(base.out, 'orderings', out),
      methods: ['splitfrozen'],
      lr: splitfrozenLr,
      ...o,
    });
    for (const ordering of orderings) {
      byOrdering[ordering.kind] =
        ordering.kind === base.ordering.kind && methodsStudy.accuracy.splitfrozen
          ? methodsStudy
          : await runSeeds(splitfrozenOnly(ordering.kind, { ordering }), seeds, { fresh });
      if (byOrdering[ordering.kind] !== methodsStudy) minutes += byOrdering[ordering.kind]!.minutes;
    }
    // The same devices in random reshuffling, their batches interleaved (training.batchOrder on the server).
    // Interleaving is a method of its own in the claims: its rate is swept as every method's is.
    const interleaved = splitfrozenOnly(INTERLEAVED, { batchOrder: 'interleaved' });
    const interleavedSweep = await sweepFor(interleaved);
    byOrdering[INTERLEAVED] = await runSeeds({ ...interleaved, lr: interleavedSweep?.chosen.splitfrozen ?? splitfrozenLr }, seeds, { fresh });
    minutes += byOrdering[INTERLEAVED]!.minutes;
    return { partition: base.partition, label, out: base.out, methods: methodsStudy, orderings: byOrdering, sweep, interleavedSweep };
  };
  for (const taskName of args.tasks!.split(',') as TaskName[]) {
    const task = await readTask(taskName, args.datasets!);
    task.notes.forEach((n) => notes.add(n));
    if (taskName === 'topics') {
      const studies: TopicStudy[] = [];
      for (const partition of partitions) {
        const base = options(task, partition, join(args.out!, `topics-${folder(partition)}`));
        // The client orderings where the order matters most (one class a device); every partition runs random
        // reshuffling (and interleaving), which the methods' runs use.
        studies.push(await topicStudy(base, partition.kind === 'extreme' ? clientOrderings(devices) : [base.ordering]));
      }
      const timed: Array<[string, TopicStudy]> = studies.length ? [[`${devices} devices, ${describePartition(studies[0]!.partition)}`, studies[0]!]] : [];
      if (manyDevices > 0) {
        const participation = parseParticipation(args.participation!, args.dropout!);
        const label = `${manyDevices} devices, ${describePartition(MANY_PARTITION)}, ${participation.fraction * 100}% sampled a round, ${participation.dropout * 100}% of those dropping out`;
        const base: ExperimentOptions = {
          ...options(task, MANY_PARTITION, join(args.out!, `topics-many-${manyDevices}`)),
          devices: manyDevices,
          trainRows: Math.min(task.train.length, manyDevices * MANY_ROWS_PER_DEVICE),
          participation,
          // FedSGD and the parallel ablation answer questions the 6-device study settles; they are left out here.
          methods: methods.filter((m) => m !== 'fedsgd' && m !== 'splitfrozen-parallel'),
        };
        const many = await topicStudy(base, [{ kind: 'random-reshuffle' }, { kind: 'grab' }], label);
        studies.push(many);
        timed.push([label, many]);
      }
      for (const study of studies) {
        await writeStudyPlots(study, `topics, ${study.label ?? describePartition(study.partition)}`, seeds.length);
        await writeStudyRecord(study);
      }
      const t = options(task, partitions[0] ?? MANY_PARTITION, '');
      const settings = `Cut ${t.cut}; LoRA r=${t.rank} (alpha ${2 * t.rank}, dropout 0.05) on c_attn; ${devices} devices holding ${t.trainRows} training rows${manyDevices > 0 ? ` (${manyDevices} devices holding ${MANY_ROWS_PER_DEVICE} rows each in the many-devices study)` : ''}; ${t.evalRows} test rows; ${t.rounds} rounds of one pass over every device's data; batches of ${t.batchSize} x ${t.seqLen} tokens.`;
      sections.push(topicSection(studies, seeds, topicsBase.name, settings));
      // Modelled time: each study's first seed, with the server's speed as measured in this process for the model
      // trained here, and with a real server's measured speed.
      for (const [label, study] of timed) {
        const first = Object.values(study.methods.runs[0]!);
        const tables = [modelledTime(first), modelledTime(first, { gflops: SERVER_GFLOPS, source: SERVER_SOURCE })].map((t) =>
          t ? timeTable(t) : 'No modelled time: it needs the splitfrozen run.',
        );
        sections.push(`### Modelled training time (${label}, seed ${seeds[0]})\n\n${tables.join('\n')}`);
      }
      sections.push(DEVICE_COMPUTE_ARITHMETIC);
    } else {
      for (const partition of partitions) {
        const out = join(args.out!, `${taskName}-${folder(partition)}`);
        const s = await runSeeds(options(task, partition, out), [0], { fresh });
        minutes += s.minutes;
        glueRows.push(glueRow(taskName, describePartition(partition), out, Object.values(s.runs[0]!), s.majorityClass));
      }
    }
  }
  const pretraining =
    glue && existsSync(join(args.model!, 'pretraining.json')) ? JSON.parse(await readFile(join(args.model!, 'pretraining.json'), 'utf8')) : undefined;
  if (pretraining) await writeFileAtomic(join(args.out!, 'pretraining.json'), JSON.stringify(pretraining, null, 2) + '\n');
  const command = ['npm run compare', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' ');
  const readme = [
    '# SplitFrozen against federated and split baselines, with a centralized bound',
    '',
    `Command: \`${command}\`. Its experiments, the validation sweeps included, took ${minutes.toFixed(0)} minutes of training and evaluation on ${cpus().length} cores (${cpus()[0]?.model}), ${new Date().toISOString().slice(0, 10)} (kept results count with the time they took when made). Over an hour, it runs in pieces, each keeping the results of the one before: \`npm run compare -- --partitions extreme --many-devices 0\` (the 6 devices, one class each), then \`npm run compare -- --partitions extreme\` (adds the many devices), then \`npm run compare\` (adds IID, and writes this page).`,
    '',
    '## How the comparison is run',
    '',
    "- **Methods.** *splitfrozen*: devices run the frozen blocks below the cut once; the server trains LoRA from the cut on their activations, device after device in a client order, one set of adapters; *splitfrozen, interleaved*: the same, one batch of each device in turn. *centralized*: the upper bound, every device's rows pooled and mixed into new batches each round, trained from the cut. *fedlora*: FedAvg of LoRA on the whole model, a pass over the device's data a round; *fedprox* and *scaffold*: fedlora with FedProx's proximal term and with SCAFFOLD's control variates (option II); *fedsgd*: each device's gradient over its round's rows, one server step on their mean. *splitlora*: devices train their blocks' LoRA in parallel, a batch at a time with the server, the gradient at the cut sent back, device adapters averaged every 10 steps and at the round's end. *splitfrozen-parallel*: SplitFrozen's ablation, per-device server adapters averaged each round.",
    '- **Budgets.** Every method computes the gradient of every row it holds once a round (the same sample gradients; FedSGD turns them into one step a round where the others take one a batch), for the same rounds. The curves linked from each table show where each method stands at that budget.',
    '- **Optimizer.** AdamW (beta 0.9/0.999, weight decay 0.01, gradients clipped to norm 1). A device training locally starts each round with a fresh AdamW (it keeps no state between rounds); the server keeps its own across rounds (SplitFrozen, the centralized bound, FedSGD).',
    "- **Tuning.** Each method's learning rate, and FedProx's mu at its chosen rate, are chosen on a validation split carved from the training rows (20%, seed 0), and so is SplitFrozen's interleaved form's (a method of its own in the claims; the client orderings run at SplitFrozen's rate: equal work); the test split is touched only by the runs reported.",
    '- **Seeds and statistics.** Each seed draws its own partition, initialisation and batch order; verdicts come from paired t-tests across the seeds, Holm-corrected over every claim at once.',
    '- **Provenance.** Every `results.json` records its seeds, its commit, the SHA-256 of the code, model and data, and every hyperparameter (`spec`, `provenance`); results are kept only while all of them are the same, else run again.',
    '',
    ...[...notes].map((n) => `Note: ${n}`),
    '',
    ...sections,
    ...(glueRows.length
      ? [
          '## GLUE (one seed)',
          '',
          `Base model: ${args.model}, pretrained with \`npm run pretrain\` on the GLUE tasks' training text` +
            (pretraining
              ? ` (${pretraining.config.nLayer} blocks, n_embd ${pretraining.config.nEmbd}; ${pretraining.steps} steps; held-out language-modelling loss ${pretraining.validationLoss.before.toFixed(2)} -> ${pretraining.validationLoss.after.toFixed(2)}; see [pretraining.json](pretraining.json)).`
              : '.') +
            ` Cut 2; LoRA r=8 (on c_attn); ${devices} devices; one pass over every device's data per round; the same rows, partitions, seeds and budgets for every method; no tuning on the evaluation split.`,
          '',
          'Compare each accuracy with the majority class of its evaluation split: this base model gives weak frozen features for GLUE, and where the methods sit at that line the comparison cannot confirm or refute anything.',
          '',
          '| task | partition | majority class | ' +
            methods.map((m) => `${m} accuracy`).join(' | ') +
            ' | device compute vs SplitLoRA | device compute vs FedLoRA | details |',
          '|---|---|---|' + methods.map(() => '---|').join('') + '---|---|---|',
          ...glueRows,
          '',
          'Device compute is forward plus backward FLOPs per device over the whole run (the arithmetic is under the modelled time above).',
          '',
        ]
      : []),
    '## What could not be tested here',
    '',
    '- **A pretrained base at real size.** The topic task runs on a random 4-block GPT-2 of width 64; GPT-2 small or Llama-3.2-1B, pretrained, were not run through the comparison (no model hub is reachable here, and 2 cores would take days). Whether the methods keep their order on a pretrained model at size is untested.',
    '- **Real devices and networks.** Device times come from the time model, with assumed phone and laptop rates and a Worker rate measured in workerd, not from a fleet.',
    "- **Stragglers' effect on accuracy.** Stragglers slow the modelled time only: no method drops a late device at a deadline here, so accuracy does not depend on them. Dropouts and partial participation do change what is trained, and are in the accuracies.",
    '',
  ].join('\n');
  await writeFileAtomic(join(args.out!, 'README.md'), readme);
  console.log(readme);
});

/** The client orderings compared: random reshuffling, shuffle-once, a fixed order (device index) and GraB. */
function clientOrderings(devices: number): OrderingSpec[] {
  return [
    { kind: 'random-reshuffle' },
    { kind: 'shuffle-once' },
    { kind: 'fixed', order: Array.from({ length: devices }, (_, i) => `device-${i}`) },
    { kind: 'grab' },
  ];
}

/** A study's accuracy by round, and against seed 0's modelled time on each device class: the mean over the seeds. */
async function writeStudyPlots(study: TopicStudy, title: string, seeds: number): Promise<void> {
  const curves = meanCurves(study);
  await writeFileAtomic(join(study.out, 'accuracy.svg'), accuracyPlot(`${title}: mean of ${seeds} seeds`, curves));
  const time = modelledTime(Object.values(study.methods.runs[0]!));
  if (!time) return;
  for (const p of DEVICE_PROFILES) {
    const seconds = (m: string) => (m === `splitfrozen, ${INTERLEAVED}` ? time.splitfrozenInterleaved : time.byMethod[m])?.[p.name];
    const axis = {
      label: `modelled training time on ${p.name}-class devices (s; seed 0's)`,
      at: (m: string, k: number) => seconds(m)![k]!,
      tick: (v: number) => v.toPrecision(3),
    };
    await writeFileAtomic(
      join(study.out, `time-${p.name}.svg`),
      accuracyPlot(
        `${title}: ${p.name}`,
        curves.filter((c) => seconds(c.method)),
        axis,
      ),
    );
  }
}

/** The minutes the runs stored under `dir` took when made (the validation sweeps': runSeeds counts the others). */
async function minutesUnder(dir: string): Promise<number> {
  let ms = 0;
  for (const f of await readdir(dir, { recursive: true }))
    if (basename(f) === 'results.json') for (const m of JSON.parse(await readFile(join(dir, f), 'utf8')).methods) ms += m.wallMs;
  return ms / 60_000;
}

/**
 * The study's record beside its seeds' results: the seeds with the commit and provenance key of each run, every
 * setting they ran with (the first seed's: only the seed differs), the rates the sweep chose, and each method's accuracy over the seeds.
 */
async function writeStudyRecord(study: TopicStudy): Promise<void> {
  const seeds = study.methods.seeds;
  const made = await Promise.all(
    seeds.map(async (seed) => {
      const r = JSON.parse(await readFile(join(study.out, `seed-${seed}`, 'results.json'), 'utf8'));
      return { seed, commit: r.commit as string, key: r.key as string, settings: r.provenance.settings };
    }),
  );
  const record = {
    setting: study.label ?? describePartition(study.partition),
    seeds: made.map(({ seed, commit, key }) => ({ seed, commit, key })),
    settings: { ...made[0]!.settings, seed: undefined },
    learningRates: study.sweep?.chosen,
    proxMu: study.sweep?.proxMu?.chosen,
    accuracy: study.methods.accuracy,
    orderings: Object.fromEntries(Object.entries(study.orderings).map(([k, o]) => [k, o.accuracy.splitfrozen])),
  };
  await writeFileAtomic(join(study.out, 'study.json'), JSON.stringify(record, null, 2) + '\n');
}
