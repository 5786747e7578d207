/**
 * npm run compare — the whole comparison, on one pretrained small base model (made first if missing), sized to
 * finish within an hour on a 2-core machine:
 * - the generated topic task (the task with signal: experiments/tasks.ts): SplitFrozen, FedLoRA, SplitLoRA and the
 *   parallel ablation under IID, Dirichlet(0.5), Dirichlet(0.1) and extreme partitions over several seeds, client
 *   orderings at equal work, each paper claim checked in direction against the seeds' spread, and modelled training
 *   time per device class;
 * - SST-2, MRPC and MNLI under IID, Dirichlet(0.1) and extreme partitions (one seed).
 * Every experiment is kept or run again by its provenance (experiments/provenance.ts); the summary goes to
 * --out/README.md with the exact command.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { describePartition, type PartitionSpec } from '../core/data/partition.ts';
import { writeFileAtomic } from '../gpu-server/model-folder/folder.ts';
import type { OrderingSpec } from '../gpu-server/ordering/ordering.ts';
import { initBackend } from '../gpu-server/backends/tfjs/runtime.ts';
import { cliArgs, int, run } from '../infra/cli.ts';
import { modelledTime, timeTable, type ExperimentOptions } from './experiment.ts';
import { loadBaseModel, parseMethods } from './options.ts';
import { runSeeds, type SeedStudy } from './study.ts';
import { readTask, type TaskName } from './tasks.ts';
import { sweepLearningRates } from './sweep.ts';
import { glueRow, INTERLEAVED, topicSection } from './compare-report.ts';

const USAGE = `usage: npm run compare -- [--out docs/experiments] [--model .local/models/pretrained] [--topics-model random] [--topics-rounds 8] [--tasks topics,sst2,mrpc,mnli]
       [--methods splitfrozen,fedlora,splitlora,splitfrozen-parallel] [--seeds 0,1,2,3,4] [--rounds 4] [--train-rows 720]
       [--eval-rows 300] [--devices 6] [--sweep-lrs 0.001,0.003,0.01|none] [--fresh]
--seeds applies to the topic task, which runs on --topics-model (a random small GPT-2 unless given: see the README it
writes); the GLUE tasks run seed 0 on --model. An experiment whose results.json in --out was made from
the same base model (by SHA-256), data, partition, methods and settings is kept; any difference runs it again, as
--fresh does. On the topic task each method's learning rate is first chosen among --sweep-lrs on a validation split
carved from the training rows (seed 0), and every seed then trains at it; the test split is touched only by those runs.`;
const args = cliArgs(USAGE, {
  out: { type: 'string', default: 'docs/experiments' },
  model: { type: 'string', default: '.local/models/pretrained' },
  'topics-model': { type: 'string', default: 'random' },
  'topics-rounds': { type: 'string' },
  tasks: { type: 'string', default: 'topics,sst2,mrpc,mnli' },
  methods: { type: 'string', default: 'splitfrozen,fedlora,splitlora,splitfrozen-parallel' },
  seeds: { type: 'string', default: '0,1,2,3,4' },
  'sweep-lrs': { type: 'string', default: '0.001,0.003,0.01' },
  rounds: { type: 'string' },
  'train-rows': { type: 'string' },
  'eval-rows': { type: 'string' },
  devices: { type: 'string' },
  datasets: { type: 'string', default: '../shared/datasets' },
  fresh: { type: 'boolean' },
});
const GLUE_PARTITIONS: PartitionSpec[] = [{ kind: 'iid' }, { kind: 'dirichlet', alpha: 0.1 }, { kind: 'extreme' }];
/** From no label skew to one class per device: heterogeneity grows along this list. */
const STUDY_PARTITIONS: PartitionSpec[] = [{ kind: 'iid' }, { kind: 'dirichlet', alpha: 0.5 }, { kind: 'dirichlet', alpha: 0.1 }, { kind: 'extreme' }];
/** A real server's training throughput: onnxruntime on these 2 cores, GPT-2 small's step at 512 tokens/s x 293 MFLOP a token. */
const SERVER_GFLOPS = 150;
const SERVER_SOURCE =
  "onnxruntime (ort-cpu) on these 2 cores as bench:train measured it (docs/benchmarks/train-2026-12-03-ort-cpu-llama-1b-generation.json: GPT-2 small's server step, 512 tokens/s at 293 MFLOP a token)";
const folder = (p: PartitionSpec) =>
  describePartition(p)
    .replace(/[^a-z0-9.]+/gi, '-')
    .replace(/-$/, '');

run(async () => {
  if (!existsSync(join(args.model!, 'config.json'))) {
    process.stderr.write(`[compare] no base model at ${args.model}: pretraining one (npm run pretrain -- --out ${args.model})\n`);
    execFileSync(process.execPath, ['--import', 'tsx', 'experiments/pretrain-cli.ts', '--out', args.model!], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  await initBackend('auto');
  const { model, name, tokenizer } = await loadBaseModel(args.model!);
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
      : { model, tokenizer, modelName: name }),
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
  for (const taskName of args.tasks!.split(',') as TaskName[]) {
    const task = await readTask(taskName, args.datasets!);
    task.notes.forEach((n) => notes.add(n));
    if (taskName === 'topics') {
      const studies = [];
      for (const partition of STUDY_PARTITIONS) {
        const out = join(args.out!, `topics-${folder(partition)}`);
        const base = options(task, partition, out);
        const sweep = rates.length ? await sweepLearningRates(base, rates, args.fresh) : undefined;
        const lrByMethod = sweep?.chosen;
        const splitfrozenLr = lrByMethod?.splitfrozen ?? base.lr;
        const methodsStudy = await runSeeds({ ...base, lrByMethod }, seeds, { fresh: args.fresh });
        // Client orderings for SplitFrozen at equal work: the same batches, only the order of the devices changes.
        // The methods' runs use random reshuffling already: their SplitFrozen is that ordering's.
        const orderings: Record<string, SeedStudy> = {};
        minutes += methodsStudy.minutes;
        for (const ordering of clientOrderings(devices)) {
          if (ordering.kind === base.ordering.kind && methodsStudy.accuracy.splitfrozen) {
            orderings[ordering.kind] = methodsStudy;
            continue;
          }
          orderings[ordering.kind] = await runSeeds(
            { ...options(task, partition, join(out, 'orderings', ordering.kind)), methods: ['splitfrozen'], ordering, lr: splitfrozenLr },
            seeds,
            { fresh: args.fresh },
          );
          minutes += orderings[ordering.kind]!.minutes;
        }
        // The same devices in random reshuffling, their batches interleaved (training.batchOrder on the server).
        orderings[INTERLEAVED] = await runSeeds(
          { ...options(task, partition, join(out, 'orderings', INTERLEAVED)), methods: ['splitfrozen'], batchOrder: 'interleaved', lr: splitfrozenLr },
          seeds,
          { fresh: args.fresh },
        );
        minutes += orderings[INTERLEAVED]!.minutes;
        studies.push({ partition, out, methods: methodsStudy, orderings, sweep });
      }
      sections.push(topicSection(studies, seeds, topicsBase.name));
      // Modelled time hardly depends on the partition: the IID experiment's first seed, with the simulation's server
      // and with a real one's measured speed.
      const first = Object.values(studies[0]!.methods.runs[0]!);
      const tables = [modelledTime(first), modelledTime(first, { gflops: SERVER_GFLOPS, source: SERVER_SOURCE })].map((t) =>
        t ? timeTable(t) : 'No modelled time: it needs the splitfrozen run.',
      );
      sections.push(`### Modelled training time (${describePartition(studies[0]!.partition)}, seed ${seeds[0]})\n\n${tables.join('\n')}`);
    } else {
      for (const partition of GLUE_PARTITIONS) {
        const out = join(args.out!, `${taskName}-${folder(partition)}`);
        const s = await runSeeds(options(task, partition, out), [0], { fresh: args.fresh });
        minutes += s.minutes;
        glueRows.push(glueRow(taskName, describePartition(partition), out, Object.values(s.runs[0]!), s.majorityClass));
      }
    }
  }
  const pretraining = existsSync(join(args.model!, 'pretraining.json')) ? JSON.parse(await readFile(join(args.model!, 'pretraining.json'), 'utf8')) : undefined;
  if (pretraining) await writeFileAtomic(join(args.out!, 'pretraining.json'), JSON.stringify(pretraining, null, 2) + '\n');
  const command = ['npm run compare', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' ');
  const readme = [
    '# SplitFrozen against FedLoRA, SplitLoRA and its parallel ablation',
    '',
    `Command: \`${command}\` (it runs \`npm run pretrain -- --out ${args.model}\`, 300 steps, first when the model is missing). The experiments took ${minutes.toFixed(1)} minutes of training and evaluation on ${cpus().length} cores (${cpus()[0]?.model}), ${new Date().toISOString().slice(0, 10)}; kept results count with the time they took when made.`,
    '',
    `Base model: ${name}, pretrained with \`npm run pretrain\` on the GLUE tasks' training text` +
      (pretraining
        ? ` (${pretraining.config.nLayer} blocks, n_embd ${pretraining.config.nEmbd}; ${pretraining.steps} steps; held-out language-modelling loss ${pretraining.validationLoss.before.toFixed(2)} -> ${pretraining.validationLoss.after.toFixed(2)}; see [pretraining.json](pretraining.json)).`
        : '.') +
      ` Cut 2; LoRA r=8 (on c_attn); ${devices} devices; one pass over every device's data per round; the same rows, partitions, seeds and budgets for every method; no tuning on the evaluation split.`,
    '',
    ...[...notes].map((n) => `Note: ${n}`),
    '',
    ...sections,
    ...(glueRows.length
      ? [
          '## GLUE (one seed)',
          '',
          'Compare each accuracy with the majority class of its evaluation split: this base model gives weak frozen features for GLUE, and where the methods sit at that line the comparison cannot confirm or refute anything.',
          '',
          '| task | partition | majority class | ' +
            methods.map((m) => `${m} accuracy`).join(' | ') +
            ' | device compute vs SplitLoRA | device compute vs FedLoRA | details |',
          '|---|---|---|' + methods.map(() => '---|').join('') + '---|---|---|',
          ...glueRows,
          '',
          "Device compute is forward plus backward FLOPs per device over the whole run. The arithmetic, plainly: SplitFrozen's devices run only the forward pass, and only in the first round (later rounds reuse the activations). A reduction r in a round therefore becomes 1 - (1 - r) / R over R rounds: against SplitLoRA's forward and backward (about twice the forward) r is about -50% a round, which over 4 rounds reads -87.5%. The per-round figure is the one to set beside a method that must recompute.",
          '',
        ]
      : []),
  ].join('\n');
  await writeFileAtomic(join(args.out!, 'README.md'), readme);
  console.log(readme);
});

/** SplitFrozen's batches interleaved (one batch of each device in turn), under random reshuffling of the devices. */

/** The client orderings compared: random reshuffling, shuffle-once, a fixed order (device index) and GraB. */
function clientOrderings(devices: number): OrderingSpec[] {
  return [
    { kind: 'random-reshuffle' },
    { kind: 'shuffle-once' },
    { kind: 'fixed', order: Array.from({ length: devices }, (_, i) => `device-${i}`) },
    { kind: 'grab' },
  ];
}
