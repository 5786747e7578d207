/** npm run experiment — one task, one partition, the methods side by side: results.json, results.md, accuracy.svg. */
import { initBackend } from '../gpu-server/backends/tfjs/runtime.ts';
import type { OrderingSpec } from '../gpu-server/ordering/ordering.ts';
import { cliArgs, fail, int, run } from '../infra/cli.ts';
import { runExperiment } from './experiment.ts';
import { loadBaseModel, parseMethods, parseParticipation, parsePartition } from './options.ts';
import { readGsm8kTask, readTask, TASKS, type TaskName } from './tasks.ts';

const USAGE = `usage: npm run experiment -- --task sst2|mrpc|mnli|topics|gsm8k --partition iid|dirichlet:ALPHA|extreme|quantity:ALPHA --out DIR
       [--model DIR|random] [--methods splitfrozen,fedlora,splitlora,splitfrozen-parallel] [--devices 6] [--rounds 4]
       [--train-rows 960] [--eval-rows 400] [--batch 16] [--seq 64] [--cut 2] [--lr 0.003] [--rank 8]
       [--ordering random-reshuffle|shuffle-once|grab] [--batch-order by-device|interleaved] [--avg-every 10] [--seed 0] [--datasets ../shared/datasets]
       [--participation 1] [--dropout 0]   (many devices: the share sampled each round, and the share of those that drop out)
gsm8k: causal-LM fine-tuning of a Llama (--model a Llama folder, default a small random one: random), evaluated by
generating answers (exact match of the final number); iid or quantity partitions only.`;
const args = cliArgs(USAGE, {
  task: { type: 'string' },
  partition: { type: 'string', default: 'iid' },
  out: { type: 'string' },
  model: { type: 'string' },
  methods: { type: 'string', default: 'splitfrozen,fedlora,splitlora' },
  devices: { type: 'string' },
  rounds: { type: 'string' },
  'train-rows': { type: 'string' },
  'eval-rows': { type: 'string' },
  batch: { type: 'string' },
  seq: { type: 'string' },
  cut: { type: 'string' },
  lr: { type: 'string', default: '0.003' },
  rank: { type: 'string' },
  ordering: { type: 'string', default: 'random-reshuffle' },
  'batch-order': { type: 'string', default: 'by-device' },
  'avg-every': { type: 'string' },
  participation: { type: 'string', default: '1' },
  dropout: { type: 'string', default: '0' },
  seed: { type: 'string' },
  datasets: { type: 'string', default: '../shared/datasets' },
});

run(async () => {
  const gsm8k = args.task === 'gsm8k';
  if (!args.task || !(gsm8k || args.task in TASKS)) fail(`--task must be one of ${[...Object.keys(TASKS), 'gsm8k'].join(', ')}\n\n${USAGE}`);
  if (!args.out) fail(`--out is required\n\n${USAGE}`);
  if (!['random-reshuffle', 'shuffle-once', 'grab'].includes(args.ordering!)) fail(`--ordering must be random-reshuffle, shuffle-once or grab`);
  if (!['by-device', 'interleaved'].includes(args['batch-order']!)) fail(`--batch-order must be by-device or interleaved`);
  await initBackend('auto');
  const { model, name, tokenizer } = await loadBaseModel(args.model ?? (gsm8k ? 'random' : '.local/models/pretrained'), gsm8k ? 'generation' : undefined);
  await runExperiment({
    task: gsm8k ? await readGsm8kTask(args.datasets!) : await readTask(args.task as TaskName, args.datasets!),
    model,
    tokenizer,
    modelName: name,
    partition: parsePartition(args.partition!),
    methods: parseMethods(args.methods!),
    devices: int('devices', args.devices, 6),
    rounds: int('rounds', args.rounds, 4),
    trainRows: int('train-rows', args['train-rows'], 960),
    evalRows: int('eval-rows', args['eval-rows'], 400),
    batchSize: int('batch', args.batch, 16),
    seqLen: int('seq', args.seq, gsm8k ? 192 : 64),
    cut: int('cut', args.cut, 2),
    lr: Number(args.lr),
    rank: int('rank', args.rank, 8),
    ordering: { kind: args.ordering } as OrderingSpec,
    batchOrder: args['batch-order'] === 'interleaved' ? 'interleaved' : undefined,
    avgEvery: int('avg-every', args['avg-every'], 10),
    participation: parseParticipation(args.participation!, args.dropout!),
    seed: int('seed', args.seed, 0),
    out: args.out,
    command: `npm run experiment -- ${process.argv.slice(2).join(' ')}`,
  });
  console.log(`wrote ${args.out}/results.json, results.md, accuracy.svg`);
});
