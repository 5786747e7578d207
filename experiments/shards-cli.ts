/** npm run shards — a task's training split partitioned into device shard files, with the label histogram. */
import { describePartition, histogramTable, labelHistogram, partition } from '../core/data/partition.ts';
import { cliArgs, fail, int, run } from '../infra/cli.ts';
import { parsePartition } from './options.ts';
import { writeShardFiles } from './shards.ts';
import { readTask, TASKS, type TaskName } from './tasks.ts';

const USAGE = `usage: npm run shards -- --task sst2|mrpc|mnli|topics --partition iid|dirichlet:ALPHA|extreme|quantity:ALPHA --devices N --out DIR
       [--rows N] [--seed 0] [--datasets ../shared/datasets]
Upload each file to its device: curl -X PUT -H "authorization: Bearer <owner token>" --data-binary @device-0.jsonl "<url>shards/train?format=jsonl&labels=<labels>"`;
const args = cliArgs(USAGE, {
  task: { type: 'string' },
  partition: { type: 'string', default: 'iid' },
  devices: { type: 'string' },
  out: { type: 'string' },
  rows: { type: 'string' },
  seed: { type: 'string' },
  datasets: { type: 'string', default: '../shared/datasets' },
});

run(async () => {
  if (!args.task || !(args.task in TASKS)) fail(`--task must be one of ${Object.keys(TASKS).join(', ')}\n\n${USAGE}`);
  if (!args.out) fail(`--out is required\n\n${USAGE}`);
  const task = await readTask(args.task as TaskName, args.datasets!);
  const rows = args.rows ? task.train.slice(0, int('rows', args.rows)) : task.train;
  const spec = parsePartition(args.partition!);
  const parts = partition(
    rows.map((r) => r.label),
    int('devices', args.devices),
    spec,
    int('seed', args.seed, 0),
  );
  const files = await writeShardFiles(args.out, rows, parts, task.labels);
  for (const n of task.notes) console.log(`note: ${n}`);
  console.log(`${task.name}, ${describePartition(spec)}, ${parts.length} devices (labels ${task.labels.join(',')}):\n`);
  console.log(
    histogramTable(
      labelHistogram(
        rows.map((r) => r.label),
        parts,
        task.labels.length,
      ),
      task.labels,
    ),
  );
  console.log(`\nwrote ${files.join(', ')}`);
});
