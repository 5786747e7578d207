/**
 * npm run compare — the whole comparison: SplitFrozen against FedLoRA and SplitLoRA on SST-2, MRPC and MNLI, each
 * under IID, Dirichlet(0.1) and extreme (one class per device) partitions, on one pretrained small base model (made
 * first if missing). Sized to finish within an hour on a 2-core machine. Each experiment writes its folder under
 * --out; the summary goes to --out/README.md with the exact command.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import { join } from 'node:path';
import type { PartitionSpec } from '../core/data/partition.ts';
import { describePartition } from '../core/data/partition.ts';
import { writeFileAtomic } from '../gpu-server/model/folder.ts';
import { initBackend } from '../gpu-server/tf/backend.ts';
import { cliArgs, int, run } from '../scripts/cli.ts';
import { runExperiment, type ExperimentOptions } from './experiment.ts';
import { keptResults, provenance } from './provenance.ts';
import { loadBaseModel, parseMethods } from './options.ts';
import type { MethodResult } from './sim/methods.ts';
import { readTask, type TaskName } from './tasks.ts';

const USAGE = `usage: npm run compare -- [--out docs/experiments] [--model .local/models/pretrained] [--tasks sst2,mrpc,mnli]
       [--methods splitfrozen,fedlora,splitlora] [--rounds 4] [--train-rows 720] [--eval-rows 300] [--devices 6] [--fresh]
An experiment whose results.json in --out was made from the same base model (by SHA-256), data, partition, methods
and settings is kept; any difference runs it again, as --fresh does.`;
const args = cliArgs(USAGE, {
  out: { type: 'string', default: 'docs/experiments' },
  model: { type: 'string', default: '.local/models/pretrained' },
  tasks: { type: 'string', default: 'sst2,mrpc,mnli' },
  methods: { type: 'string', default: 'splitfrozen,fedlora,splitlora' },
  rounds: { type: 'string' },
  'train-rows': { type: 'string' },
  'eval-rows': { type: 'string' },
  devices: { type: 'string' },
  datasets: { type: 'string', default: '../shared/datasets' },
  fresh: { type: 'boolean' },
});
const PARTITIONS: PartitionSpec[] = [{ kind: 'iid' }, { kind: 'dirichlet', alpha: 0.1 }, { kind: 'extreme' }];

run(async () => {
  if (!existsSync(join(args.model!, 'config.json'))) {
    process.stderr.write(`[compare] no base model at ${args.model}: pretraining one (npm run pretrain -- --out ${args.model})\n`);
    execFileSync(process.execPath, ['--import', 'tsx', 'experiments/pretrain-cli.ts', '--out', args.model!], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  await initBackend('auto');
  const { model, name } = await loadBaseModel(args.model!);
  const methods = parseMethods(args.methods!);
  const rows: string[] = [];
  const notes = new Set<string>();
  let experimentMinutes = 0;
  for (const taskName of args.tasks!.split(',') as TaskName[]) {
    const task = await readTask(taskName, args.datasets!);
    task.notes.forEach((n) => notes.add(n));
    for (const partition of PARTITIONS) {
      const out = join(args.out!, `${taskName}-${describePartition(partition).replace(/[^a-z0-9.]+/gi, '-').replace(/-$/, '')}`);
      const options: ExperimentOptions = {
        task,
        model,
        modelName: name,
        partition,
        methods,
        devices: int('devices', args.devices, 6),
        rounds: int('rounds', args.rounds, 4),
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
      };
      const { key, provenance: now } = await provenance(options);
      const kept = args.fresh ? { rerun: '--fresh' } : await keptResults<{ methods: MethodResult[]; majorityClass?: number }>(out, key, now);
      if ('kept' in kept) {
        process.stderr.write(`[compare] ${out}: kept (made from the same model, data and settings; --fresh runs it again)\n`);
        rows.push(summaryRow(taskName, describePartition(partition), out, kept.kept.methods, kept.kept.majorityClass));
        experimentMinutes += kept.kept.methods.reduce((a, m) => a + m.wallMs, 0) / 60000;
        continue;
      }
      process.stderr.write(`[compare] ${out}: running (${kept.rerun})\n`);
      const { results, summary } = await runExperiment(options);
      rows.push(summaryRow(taskName, describePartition(partition), out, results, summary.majorityClass as number));
      experimentMinutes += results.reduce((a, m) => a + m.wallMs, 0) / 60000;
    }
  }
  const minutes = experimentMinutes.toFixed(1);
  const pretraining = existsSync(join(args.model!, 'pretraining.json')) ? JSON.parse(await readFile(join(args.model!, 'pretraining.json'), 'utf8')) : undefined;
  if (pretraining) await writeFileAtomic(join(args.out!, 'pretraining.json'), JSON.stringify(pretraining, null, 2) + '\n');
  const command = ['npm run compare', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' ');
  const readme = [
    '# SplitFrozen against FedLoRA and SplitLoRA',
    '',
    `Command: \`${command}\` (after \`npm run pretrain -- --out ${args.model}${pretraining ? ` --steps ${pretraining.steps}` : ''}\`, which it runs itself, with 300 steps, when the model is missing). The experiments took ${minutes} minutes of training and evaluation on ${cpus().length} cores (${cpus()[0]?.model}), ${new Date().toISOString().slice(0, 10)}.`,
    '',
    `Base model: ${name}, pretrained with \`npm run pretrain\` on the tasks' training text` +
      (pretraining
        ? ` (${pretraining.config.nLayer} blocks, n_embd ${pretraining.config.nEmbd}; ${pretraining.steps} steps; held-out language-modelling loss ${pretraining.validationLoss.before.toFixed(2)} -> ${pretraining.validationLoss.after.toFixed(2)}; see [pretraining.json](pretraining.json)).`
        : '.') +
      ` Cut 2; LoRA r=8 on c_attn; 6 devices; one pass over every device's data per round; the same rows, partitions and seeds for every method.`,
    '',
    'How to read this: compare each accuracy with the majority class of its evaluation split (what always answering the most frequent label scores). A base model this small gives weak frozen features: where the methods sit at or near that line, the comparison cannot confirm or refute the accuracy claims of the paper. The device-side compute, memory and traffic do not depend on the weights. With a longer `npm run pretrain -- --steps N` or a downloaded GPT-2 (`--model DIR`), the same command runs unchanged.',
    '',
    ...[...notes].map((n) => `Note: ${n}`),
    '',
    '| task | partition | majority class | ' + methods.map((m) => `${m} accuracy`).join(' | ') + ' | SplitFrozen vs best other | device compute vs SplitLoRA | device compute vs FedLoRA | details |',
    '|---|---|---|' + methods.map(() => '---|').join('') + '---|---|---|---|',
    ...rows,
    '',
    'Accuracy is the final round\'s on the evaluation split. Device compute is forward plus backward FLOPs per device over the run (SplitFrozen computes its activations once and reuses them).',
    '',
  ].join('\n');
  await writeFileAtomic(join(args.out!, 'README.md'), readme);
  console.log(readme);
});

function summaryRow(task: string, partition: string, out: string, results: MethodResult[], majority?: number): string {
  const final = (r: MethodResult) => r.rounds.at(-1)!.accuracy;
  const by = new Map(results.map((r) => [r.method, r]));
  const sf = by.get('splitfrozen');
  const others = results.filter((r) => r.method !== 'splitfrozen');
  const best = others.length ? Math.max(...others.map(final)) : undefined;
  const compute = (r?: MethodResult) => (r ? r.deviceForwardFlops + r.deviceBackwardFlops : undefined);
  const reduction = (other?: MethodResult) => (sf && other ? `-${((1 - compute(sf)! / compute(other)!) * 100).toFixed(1)}%` : '-');
  const gain = sf && best !== undefined ? `${final(sf) >= best ? '+' : ''}${((final(sf) - best) * 100).toFixed(1)} points` : '-';
  return `| ${task} | ${partition} | ${majority === undefined ? '-' : `${(majority * 100).toFixed(1)}%`} | ${results.map((r) => `${(final(r) * 100).toFixed(1)}%`).join(' | ')} | ${gain} | ${reduction(by.get('splitlora'))} | ${reduction(by.get('fedlora'))} | [${out.split('/').pop()}](${out.split('/').pop()}/results.md) |`;
}
