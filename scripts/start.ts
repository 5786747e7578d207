/**
 * npm start — the whole system locally, on embedded defaults: an S3 server and three device workers under workerd
 * (with different capacity profiles, so different cuts), a tiny GPT-2 made on the fly, a dataset (a GLUE folder given
 * with --data, else a small generated task), the training server, and a few rounds driven over its HTTP API.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { parseShard, textInput, type Example } from '../core/data/shard.ts';
import { syntheticSentiment } from '../core/data/synthetic.ts';
import { gpt2Config } from '../core/model/config.ts';
import { initModel } from '../core/model/init.ts';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS } from '../core/peft/adapter.ts';
import { DEFAULT_MIN_CUT } from '../core/wire/policy.ts';
import { ServerClient, type RunView } from '../gpu-server/api/client.ts';
import { asGpt2 } from '../core/model/family.ts';
import { readModelFolder, writeModelFolder } from '../gpu-server/model/folder.ts';
import type { RoundMetrics } from '../gpu-server/runs/manager.ts';
import { startServer } from '../gpu-server/server.ts';
import { LOCAL_DIR } from '../infra/local/paths.ts';
import { startStack } from '../infra/local/stack.ts';
import { inversionReport, percent } from '../experiments/privacy.ts';
import { cliArgs, int, run } from './cli.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
process.env.WRANGLER_LOG ??= 'warn';

const USAGE = `usage: npm start -- [--data GLUE_TASK_DIR] [--model GPT2_DIR] [--rounds N] [--rows-per-device N] [--eval-rows N] [--ordering random-reshuffle|shuffle-once|grab]
--data reads train.tsv and dev.tsv of a GLUE task folder (e.g. ../shared/datasets/glue/SST-2); without it a small generated task is used.
--model uses a GPT-2 folder in the Hugging Face layout (e.g. gpt2 downloaded from the Hub) instead of a tiny random one.`;
const args = cliArgs(USAGE, {
  data: { type: 'string' },
  model: { type: 'string' },
  rounds: { type: 'string' },
  'rows-per-device': { type: 'string' },
  'eval-rows': { type: 'string' },
  ordering: { type: 'string', default: 'random-reshuffle' },
});

const DIR = resolve(LOCAL_DIR, 'start');
const DEVICES = 3;
const step = (n: number, msg: string) => console.log(`\n[${n}/6] ${msg}`);
const seconds = (ms: number | undefined) => (ms === undefined ? '-' : (ms / 1000).toFixed(1));

// Simulated capacity profiles: a slow, a middling and a fast device, so the planner gives each its own cut.
const PROFILES = [
  { memoryMB: 128, gflops: 0.2, maxBatchSeconds: 1 },
  { memoryMB: 128, gflops: 0.3, maxBatchSeconds: 1 },
  { memoryMB: 256, gflops: 5, maxBatchSeconds: 1 },
];

async function loadData(): Promise<{ train: Example[]; evaluation: Example[]; labels: string[]; source: string }> {
  const perDevice = int('rows-per-device', args['rows-per-device'], 200);
  const evalRows = int('eval-rows', args['eval-rows'], 200);
  const labels = ['0', '1'];
  if (!args.data) {
    const rows = syntheticSentiment(perDevice * DEVICES + evalRows, 7).map((r) => ({ text: r.text, label: Number(r.label) }));
    return { train: rows.slice(evalRows), evaluation: rows.slice(0, evalRows), labels, source: 'generated sentiment task' };
  }
  const read = async (file: string) => parseShard(await readFile(join(args.data!, file)), 'tsv', labels, { maxBytes: 2 ** 30, maxRows: 10_000_000, maxFieldChars: 100_000 });
  const train = await read('train.tsv');
  const evaluation = await read('dev.tsv');
  return { train: train.slice(0, perDevice * DEVICES), evaluation: evaluation.slice(0, evalRows), labels, source: `${args.data} (train.tsv: first ${perDevice * DEVICES} rows, dev.tsv: first ${evalRows})` };
}

function progressLine(view: RunView, rounds: number): string {
  const p = view.progress;
  if (!p) return '';
  const width = 30;
  const done = p.batchesTotal ? Math.round((width * p.batchesTrained) / p.batchesTotal) : 0;
  const device = Object.entries(p.devices).find(([, d]) => d.state === 'training')?.[0] ?? '';
  return `round ${p.round + 1}/${rounds} [${'#'.repeat(done)}${'.'.repeat(width - done)}] ${p.batchesTrained}/${p.batchesTotal} batches ${p.phase}${device ? ` on ${device}` : ''}${p.lastLoss === undefined ? '' : ` loss ${p.lastLoss.toFixed(4)}`}`;
}

function roundRow(m: RoundMetrics): string {
  const timed = m.devices.filter((d) => d.forwardMs !== undefined);
  const forward = timed.length ? timed.reduce((a, d) => a + d.forwardMs!, 0) : undefined;
  return `| ${m.round} | ${m.order.join(' > ')} | ${m.trainLoss.toFixed(4)} | ${m.evalLoss?.toFixed(4) ?? '-'} | ${m.evalAccuracy === undefined ? '-' : (m.evalAccuracy * 100).toFixed(1) + '%'} | ${seconds(forward)} | ${seconds(m.serverTrainMs)} | ${seconds(m.serverIdleMs)} | ${(m.bytesMoved / 2 ** 20).toFixed(2)} | ${m.devices.filter((d) => d.reused).length}/${m.devices.length} | ${seconds(m.wallMs)} |`;
}

run(async () => {
  const rounds = int('rounds', args.rounds, 3);
  await rm(DIR, { recursive: true, force: true });

  step(1, `local stack: S3 server and ${DEVICES} device workers under workerd (127.0.0.1 only)`);
  const stack = await startStack({ dir: join(DIR, 'stack'), devices: DEVICES });
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  try {
    for (const d of stack.devices) console.log(`      ${d.id}: ${d.url.href}`);

    let modelDir = args.model;
    if (modelDir) {
      step(2, `model: ${modelDir}`);
    } else {
      step(2, 'model: a tiny GPT-2 (5 blocks, n_embd 64) in the Hugging Face layout, random weights');
      modelDir = join(DIR, 'tiny-gpt2');
      await writeModelFolder(modelDir, initModel(gpt2Config({ nLayer: 5, nEmbd: 64, nHead: 4, nPositions: 64 }), { seed: 0 }));
    }
    const model = asGpt2(await readModelFolder(modelDir), 'npm start');
    const config = model.config;
    // A model whose fp32 token table alone would crowd a Worker's memory runs int8 prefixes on the devices.
    const weights = config.vocabSize * config.nEmbd * 4 > 32 * 2 ** 20 ? ('int8' as const) : ('fp32' as const);
    // Each owner decides what runs on their text: here they approve the segments of cuts 2 and deeper (2 is every
    // device's default minimum), each exported from the same base model, so they know exactly which graphs run.
    const cuts = Array.from({ length: config.nLayer - DEFAULT_MIN_CUT }, (_, i) => DEFAULT_MIN_CUT + i);
    await stack.approveSegments(model, basename(modelDir), cuts, weights);
    console.log(`      each device's owner approved the segments of cuts ${DEFAULT_MIN_CUT}..${config.nLayer - 1} (by SHA-256; no device runs below cut ${DEFAULT_MIN_CUT})`);

    const data = await loadData();
    step(3, `data: ${data.source}; ${data.train.length} training rows split over the devices as their owners' private shards, ${data.evaluation.length} held out`);
    for (const [i, d] of stack.devices.entries()) {
      const shard = data.train.filter((_, r) => r % DEVICES === i).map((r) => ({ text: r.text, text_pair: r.textPair, label: data.labels[r.label] }));
      await d.uploadShard('private', shard, data.labels);
      console.log(`      ${d.id}: ${shard.length} rows`);
    }

    step(4, 'training server: TensorFlow.js, HTTP API on 127.0.0.1');
    const operatorToken = crypto.randomUUID();
    server = await startServer({ host: '127.0.0.1', port: 0, operatorToken, roundSecret: stack.roundSecret, s3: stack.s3.config, backend: 'auto', log: () => {} });
    console.log(`      TensorFlow.js backend: ${server.backend}`);
    const client = new ServerClient(server.url, operatorToken);

    step(5, `run: LoRA r=8 on c_attn, ${args.ordering} client order, ${rounds} rounds`);
    const record = await client.createRun({
      model: modelDir,
      task: { labels: data.labels, evalRows: data.evaluation.map((r) => ({ text: r.text, text_pair: r.textPair, label: data.labels[r.label] })) },
      devices: stack.devices.map((d, i) => ({ id: d.id, url: d.url.href, profile: { ...PROFILES[i], weights } })),
      ordering: { kind: args.ordering },
      lora: { rank: 8, alpha: 16, dropout: 0.05, targets: ['attn.c_attn'] },
      optimizer: { lr: 0.01, warmupSteps: 5, schedule: 'linear' },
      training: { batchSize: 16, seqLen: 48, dtype: 'fp32', seed: 0, rounds },
    });
    // What each cut gives away: the server's held-out rows as the attacker's text, a sample of the device's shard as
    // the victim (npm start plays every owner, so it can score the attack on their text).
    const texts = (rows: Example[]) => rows.map(textInput);
    console.log('\n| device | profile | cut | est. memory | est. batch time | tokens a curious server recovers at this cut |\n|---|---|---|---|---|---|');
    for (const [i, d] of stack.devices.entries()) {
      const c = record.cuts[d.id];
      const sample = data.train.filter((_, r) => r % DEVICES === i).slice(0, 50);
      const [privacy] = await inversionReport(model, [c.cut], texts(data.evaluation), texts(sample), { seqLen: 48 });
      console.log(`| ${d.id} | ${PROFILES[i].gflops} GFLOP/s, ${PROFILES[i].maxBatchSeconds} s/batch, ${PROFILES[i].memoryMB} MB | ${c.cut} | ${c.memoryMB} MB | ${c.batchSeconds} s | ${percent(privacy.recovery)} (guessing: ${percent(privacy.majority)}) |`);
    }
    console.log('(nearest-neighbour inversion, npm run privacy; with random weights the hidden states stay close to the token embeddings at every cut)');
    console.log(`adapters train on blocks ${record.deepestCut}..${config.nLayer - 1}; devices with shallower cuts are completed forward-only on the server\n`);

    const tty = process.stderr.isTTY;
    let lastLine = '';
    let view: RunView | undefined;
    console.log('| round | client order | train loss | eval loss | eval accuracy | device forward (s) | server train (s) | server idle (s) | MB moved | devices reused | wall (s) |');
    console.log('|---|---|---|---|---|---|---|---|---|---|---|');
    for (let r = 0; r < rounds; r++) {
      await client.trigger(record.id);
      view = await client.waitIdle(record.id, (v) => {
        const line = progressLine(v, rounds);
        if (!line || line === lastLine) return;
        lastLine = line;
        if (tty) process.stderr.write(`\r${line}`);
        else if (v.progress?.phase !== 'training' || v.progress.batchesTrained % 10 === 0) process.stderr.write(`${line}\n`);
      });
      if (tty) process.stderr.write('\r\x1b[K');
      if (view.progress?.phase === 'failed') throw new Error(`round ${view.progress.round} failed: ${view.progress.error}`);
      console.log(roundRow(view.metrics.at(-1)!));
    }

    step(6, 'adapter');
    const out = join(DIR, 'adapter');
    await mkdir(out, { recursive: true });
    for (const file of [ADAPTER_CONFIG, ADAPTER_WEIGHTS]) await writeFile(join(out, file), await client.adapterFile(record.id, 'latest', file));
    const last = view!.metrics.at(-1)!;
    console.log(`      eval accuracy after ${rounds} rounds: ${((last.evalAccuracy ?? 0) * 100).toFixed(1)}% on ${last.evalRows} held-out rows (chance: ${(100 / data.labels.length).toFixed(0)}%)`);
    console.log(`      PEFT adapter (round ${last.round}): ${out}/{${ADAPTER_CONFIG},${ADAPTER_WEIGHTS}}`);
    console.log(`      in storage: s3://${stack.s3.config.bucket}/runs/${record.id}/adapters/${last.round}/ (data kept under ${join(DIR, 'stack', 's3')})`);
    console.log(`      against a running server: SPLITFROZEN_URL=<server> SPLITFROZEN_TOKEN=<token> npm run cli -- pull --run ${record.id} --out ./adapter`);
  } finally {
    await server?.close();
    await stack.stop();
  }
});
