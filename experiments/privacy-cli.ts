/** npm run privacy — the inversion attack at each cut of a model (GPT-2 or Llama): how much of a text a cut gives away. */
import { syntheticSentiment } from '../core/data/synthetic.ts';
import { readModelFolder, readTokenizer } from '../gpu-server/model/folder.ts';
import { cliArgs, fail, int, run } from '../scripts/cli.ts';
import { inversionReport, percent } from './privacy.ts';
import { readTask, TASKS, type TaskName } from './tasks.ts';

const USAGE = `usage: npm run privacy -- --model DIR [--cuts 0,1,2] [--task generated|sst2|mrpc|mnli] [--attacker-rows 400] [--victim-rows 100]
       [--seq 48] [--datasets ../shared/datasets]
The attacker's text is the task's training split, the victims' its evaluation split (generated: two seeds).`;
const args = cliArgs(USAGE, {
  model: { type: 'string' },
  cuts: { type: 'string' },
  task: { type: 'string', default: 'generated' },
  'attacker-rows': { type: 'string' },
  'victim-rows': { type: 'string' },
  seq: { type: 'string' },
  datasets: { type: 'string', default: '../shared/datasets' },
});

run(async () => {
  if (!args.model) fail(`--model is required\n\n${USAGE}`);
  const model = await readModelFolder(args.model);
  const n = model.config.nLayer;
  const cuts = args.cuts ? args.cuts.split(',').map((c) => int('cuts', c)) : Array.from({ length: n }, (_, i) => i);
  for (const c of cuts) if (c < 0 || c >= n) fail(`--cuts: ${c} is not a cut of this ${n}-block model (0 to ${n - 1})`);
  const attackerRows = int('attacker-rows', args['attacker-rows'], 400);
  const victimRows = int('victim-rows', args['victim-rows'], 100);
  let attacker: string[];
  let victims: string[];
  if (args.task === 'generated') {
    [attacker, victims] = [syntheticSentiment(attackerRows, 101).map((r) => r.text), syntheticSentiment(victimRows, 202).map((r) => r.text)];
  } else {
    if (!(args.task! in TASKS)) fail(`--task must be generated or one of ${Object.keys(TASKS).join(', ')}`);
    const task = await readTask(args.task as TaskName, args.datasets!);
    [attacker, victims] = [task.train.slice(0, attackerRows).map((r) => r.text), task.eval.slice(0, victimRows).map((r) => r.text)];
  }
  const report = await inversionReport(model, cuts, attacker, victims, { seqLen: int('seq', args.seq, 48), tokenizer: await readTokenizer(args.model, model.config) });
  console.log(`nearest-neighbour inversion: ${attacker.length} attacker rows, ${victims.length} victim rows (${args.task})\n`);
  console.log('| cut | tokens recovered | always the most frequent token | tokens attacked |\n|---|---|---|---|');
  for (const r of report) console.log(`| ${r.cut} | ${percent(r.recovery)} | ${percent(r.majority)} | ${r.tokens} |`);
  console.log(`\n${JSON.stringify({ model: args.model, task: args.task, report })}`);
});
