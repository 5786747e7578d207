/** npm run pretrain — a small GPT-2 pretrained on the tasks' training text, saved in the Hugging Face layout. */
import { join } from 'node:path';
import { writeModelFolder, writeFileAtomic } from '../gpu-server/model-folder/folder.ts';
import { initBackend } from '../gpu-server/backends/tfjs/runtime.ts';
import { cliArgs, fail, int, run } from '../infra/cli.ts';
import { pretrain } from './pretrain.ts';
import { readTask, TASKS, type TaskName } from './tasks.ts';

const USAGE = `usage: npm run pretrain -- --out DIR [--tasks sst2,mrpc,mnli] [--datasets ../shared/datasets]
       [--layers 4] [--embd 128] [--heads 4] [--seq 64] [--batch 16] [--steps 300] [--lr 0.003] [--vocab 8192] [--seed 0]`;
const args = cliArgs(USAGE, {
  out: { type: 'string' },
  tasks: { type: 'string', default: 'sst2,mrpc,mnli' },
  datasets: { type: 'string', default: '../shared/datasets' },
  layers: { type: 'string' },
  embd: { type: 'string' },
  heads: { type: 'string' },
  seq: { type: 'string' },
  batch: { type: 'string' },
  steps: { type: 'string' },
  lr: { type: 'string', default: '0.003' },
  vocab: { type: 'string' },
  seed: { type: 'string' },
});

run(async () => {
  if (!args.out) fail(`--out is required\n\n${USAGE}`);
  const names = args.tasks!.split(',') as TaskName[];
  for (const n of names) if (!(n in TASKS)) fail(`--tasks: unknown task '${n}'; use ${Object.keys(TASKS).join(', ')}`);
  const texts: string[] = [];
  const notes: string[] = [];
  for (const name of names) {
    const task = await readTask(name, args.datasets!);
    notes.push(...task.notes);
    // Training rows only: evaluation text never reaches the base model.
    for (const r of task.train) texts.push(r.text, ...(r.textPair === undefined ? [] : [r.textPair]));
  }
  const backend = await initBackend('auto');
  const steps = int('steps', args.steps, 300);
  const started = Date.now();
  const { model, report } = pretrain(texts, {
    config: { nLayer: int('layers', args.layers, 4), nEmbd: int('embd', args.embd, 128), nHead: int('heads', args.heads, 4) },
    seqLen: int('seq', args.seq, 64),
    batchSize: int('batch', args.batch, 16),
    steps,
    lr: Number(args.lr),
    vocab: int('vocab', args.vocab, 8192),
    seed: int('seed', args.seed, 0),
    onProgress: ({ step, loss, tokensPerSecond }) => {
      if (step % 10 !== 0 && step !== steps) return;
      const eta = ((Date.now() - started) / step) * (steps - step);
      process.stderr.write(
        `[pretrain] step ${step}/${steps} loss ${loss.toFixed(3)} ${Math.round(tokensPerSecond)} tokens/s, ${Math.round(eta / 1000)} s left\n`,
      );
    },
  });
  await writeModelFolder(args.out, model);
  const summary = {
    tasks: names,
    notes,
    backend: backend.backend,
    config: model.config,
    ...report,
    trainLoss: undefined,
    trainLossEvery10: report.trainLoss.filter((_, i) => i % 10 === 9),
  };
  await writeFileAtomic(join(args.out, 'pretraining.json'), JSON.stringify(summary, null, 2) + '\n');
  console.log(
    JSON.stringify({ wrote: args.out, validationLoss: report.validationLoss, tokensPerSecond: report.tokensPerSecond, corpus: report.corpus, notes }, null, 2),
  );
});
