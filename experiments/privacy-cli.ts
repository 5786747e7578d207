/**
 * npm run privacy — what a curious server recovers of a device's text at a cut, by every attack of the suite,
 * undefended and under a defence; with --sweep, the frontier of privacy against accuracy (docs/privacy/).
 */
import { DEFAULT_LEVEL, LEVELS, parseDefence } from '../core/privacy/defence.ts';
import { initBackend } from '../gpu-server/backends/tfjs/runtime.ts';
import { readModelFolder, readTokenizer } from '../gpu-server/model-folder/folder.ts';
import { cliArgs, fail, int, run } from '../infra/cli.ts';
import { percent, privacyReport, type DeviceSetting, type SuiteResult } from './privacy.ts';
import { demoModel, generatedTask, GROUPS_DEFAULT, privacySweep, publicGeneratedText, SWEEP, textOf } from './privacy-sweep.ts';
import { readGsm8kTask, readTask, TASKS, type TaskName } from './tasks.ts';
import { join } from 'node:path';
import { LOCAL_DIR } from '../infra/local/paths.ts';
import { writeTinyLlama } from '../gpu-server/model-folder/folder.ts';
import { familyOf } from '../core/model/family.ts';

const USAGE = `usage: npm run privacy -- [--model DIR] [--cut 2] [--defence ${Object.keys(LEVELS).join('|')}|groups|JSON] [--task generated|gsm8k|sst2|mrpc|mnli]
       [--attacker-rows 200] [--victim-rows 50] [--seq 48] [--datasets ../shared/datasets]
       npm run privacy -- --sweep [--levels] [--task generated|gsm8k|sst2] [--model DIR] [--out docs/privacy] [--seeds 3] [--rounds 6]
The attacker's text is the task's evaluation split (public), the victims' rows its training split. Without --model:
the tiny random GPT-2 of npm start (5 blocks, n_embd 64). --sweep: every defence over its settings, the strongest
attack's recovery against accuracy when the server fine-tunes on the defended activations (--levels: the named
levels only, and groups). --defence groups: randomised response at epsilon 0 within groups of 10+ similar tokens built
from the public text (what npm start's owners approve on the generated task).`;
const args = cliArgs(USAGE, {
  model: { type: 'string' },
  cut: { type: 'string' },
  defence: { type: 'string', default: DEFAULT_LEVEL },
  task: { type: 'string', default: 'generated' },
  'attacker-rows': { type: 'string' },
  'victim-rows': { type: 'string' },
  seq: { type: 'string' },
  datasets: { type: 'string', default: '../shared/datasets' },
  sweep: { type: 'boolean' },
  levels: { type: 'boolean' },
  out: { type: 'string', default: 'docs/privacy' },
  seeds: { type: 'string' },
  rounds: { type: 'string' },
});

function table(r: SuiteResult): string {
  const lines = ['| attack | tokens recovered | rows recovered at least half |', '|---|---|---|'];
  for (const [name, s] of Object.entries(r.attacks)) lines.push(`| ${name} | ${percent(s.recovery)} | ${percent(s.rowsHalf)} |`);
  if (r.adaptiveFreshNoise)
    lines.push(`| adaptive, if noise were drawn afresh per copy | ${percent(r.adaptiveFreshNoise.recovery)} | ${percent(r.adaptiveFreshNoise.rowsHalf)} |`);
  lines.push(`| always the most frequent public token | ${percent(r.strongest.majority)} | |`);
  return lines.join('\n');
}

/** The model folder: --model, or for GSM8K npm start's tiny Llama, written once under .local/. */
async function modelFolder(): Promise<string | undefined> {
  if (args.model || args.task !== 'gsm8k') return args.model;
  const dir = join(LOCAL_DIR, 'privacy', 'tiny-llama');
  await writeTinyLlama(dir);
  return dir;
}

run(async () => {
  const gsm8k = args.task === 'gsm8k';
  const task =
    args.task === 'generated'
      ? generatedTask()
      : gsm8k
        ? await readGsm8kTask(args.datasets!)
        : args.task! in TASKS
          ? await readTask(args.task as TaskName, args.datasets!)
          : fail(`--task must be generated, gsm8k or one of ${Object.keys(TASKS).join(', ')}`);
  const dir = await modelFolder();
  const model = dir ? await readModelFolder(dir) : demoModel();
  const tokenizer = await readTokenizer(dir ?? '', model.config);
  const cut = int('cut', args.cut, 2);
  if (cut < 1 || cut >= model.config.nLayer) fail(`--cut: ${cut} is not a cut of this ${model.config.nLayer}-block model (1 to ${model.config.nLayer - 1})`);
  const seqLen = int('seq', args.seq, 48);
  if (args.sweep) {
    await initBackend('auto');
    const seeds = int('seeds', args.seeds, 3);
    await privacySweep({
      task,
      model,
      modelName:
        args.model ?? (gsm8k ? "npm start's tiny random Llama (4 blocks, hidden 64, Llama 3's vocabulary)" : 'tiny random GPT-2 (5 blocks, n_embd 64, seed 0)'),
      tokenizer,
      settings: args.levels ? [...Object.values(LEVELS).map((defence): DeviceSetting => ({ kind: 'output', defence })), GROUPS_DEFAULT] : SWEEP,
      cut,
      devices: 3,
      // GSM8K as npm start -- --task gsm8k runs it: 16 problems a device, sequences of 192 tokens.
      trainRows: gsm8k ? 48 : 600,
      evalRows: gsm8k ? 16 : 400,
      rounds: int('rounds', args.rounds, gsm8k ? 3 : 6),
      lr: gsm8k ? 0.003 : 0.01,
      seeds: Array.from({ length: seeds }, (_, i) => i),
      targets: [...familyOf(model.config).defaultTargets],
      batchSize: gsm8k ? 8 : 16,
      seqLen: gsm8k ? 192 : seqLen,
      victimRows: int('victim-rows', args['victim-rows'], gsm8k ? 24 : 50),
      attackerRows: int('attacker-rows', args['attacker-rows'], gsm8k ? 16 : 200),
      ...(args.task === 'generated' ? { publicTexts: publicGeneratedText() } : {}),
      out: args.out!,
      command: `npm run privacy -- ${process.argv.slice(2).join(' ')}`,
      log: (m) => console.log(m),
    });
    return;
  }
  let setting: DeviceSetting;
  try {
    setting =
      args.defence === 'groups'
        ? GROUPS_DEFAULT
        : { kind: 'output', defence: parseDefence(args.defence!.startsWith('{') ? JSON.parse(args.defence!) : args.defence, '--defence') };
  } catch (e) {
    fail((e as Error).message);
  }
  const attacker = task.eval.slice(0, int('attacker-rows', args['attacker-rows'], 200)).map(textOf);
  const victims = task.train.slice(0, int('victim-rows', args['victim-rows'], 50)).map(textOf);
  const settings: DeviceSetting[] = [{ kind: 'output', defence: LEVELS.off }, setting];
  for (const r of await privacyReport(model, cut, settings, attacker, victims, {
    seqLen: gsm8k ? 192 : seqLen,
    tokenizer,
    publicTexts: args.task === 'generated' ? publicGeneratedText() : task.eval.map(textOf),
  })) {
    console.log(
      `\n${task.name}, cut ${cut}, defence ${r.setting}${r.clip ? ` (clip ${r.clip})` : ''}: ${attacker.length} public rows, ${victims.length} victim rows\n`,
    );
    console.log(table(r));
    console.log(`\n${JSON.stringify(r)}`);
  }
});
