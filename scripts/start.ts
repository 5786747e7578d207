/**
 * npm start — the whole system locally, on embedded defaults: an S3 server and three device workers under workerd
 * (with different capacity profiles, so different cuts), a tiny model made on the fly, a dataset, the training
 * server, and a few rounds driven over its HTTP API. Classification (default): a tiny GPT-2 on a GLUE folder given
 * with --data, else a small generated task. --task gsm8k: a tiny Llama-3-shaped model fine-tuned on a GSM8K sample as a
 * causal LM, evaluated by generating answers.
 */
import { withRetries } from '../core/retry.ts';
import { readFile, rm } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { DEFAULT_LIMITS, parseShard, textInput, type Example } from '../core/data/shard.ts';
import { parseGenerationShard, type GenerationExample } from '../core/data/generation.ts';
import { syntheticSentiment } from '../core/data/synthetic.ts';
import { gpt2Config } from '../core/model/gpt2/config.ts';
import { initModel } from '../core/model/gpt2/init.ts';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS } from '../core/peft/adapter.ts';
import { DEFAULT_MIN_CUT } from '../core/wire/policy.ts';
import { ServerClient, type RunView } from '../gpu-server/api/client.ts';
import { pullAdapter } from '../gpu-server/api/pull.ts';
import { readModelFolder, readTokenizer, writeModelFolder, writeTinyLlama } from '../gpu-server/model-folder/folder.ts';
import { sha256Hex } from '../core/auth/signing.ts';
import { GSM8K_DEFAULT, GSM8K_HEADER, GSM8K_PROFILES, gsm8kData, gsm8kRunTask, printSamples } from './start-gsm8k.ts';
import { followRound, roundRow } from './round-progress.ts';
import { startServer } from '../gpu-server/server.ts';
import { LOCAL_DIR } from '../infra/local/paths.ts';
import { startStack } from '../infra/local/stack.ts';
import { percent, privacyReport } from '../experiments/privacy.ts';
import { describeDefence, LEVELS } from '../core/privacy/defence.ts';
import { DEFENCE_CHOICES, ownersDefence } from './start-defence.ts';
import { publicGeneratedText } from '../experiments/privacy-sweep.ts';
import { defenceFor, type DevicePolicy } from '../core/wire/policy.ts';
import { deviceSegment } from '../core/onnx/segment.ts';
import { cliArgs, int, run } from '../infra/cli.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
process.env.WRANGLER_LOG ??= 'warn';

const USAGE = `usage: npm start -- [--task classification|gsm8k] [--data PATH] [--model DIR] [--rounds N] [--rows-per-device N] [--eval-rows N] [--ordering random-reshuffle|shuffle-once|grab]
       [--batch-order by-device|interleaved] [--defence ${DEFENCE_CHOICES}]
--data: classification reads train.tsv and dev.tsv of a GLUE task folder (e.g. ../shared/datasets/glue/SST-2), without it a
  small generated task is used; gsm8k reads GSM8K JSON lines (default ../shared/datasets/gsm8k/train.jsonl).
--model uses a model folder in the Hugging Face layout (GPT-2 for classification, Llama for gsm8k, e.g. downloaded from the
  Hub) instead of a tiny random one.
--defence: the defence each owner approves their segments with (default on the generated task: groups, randomised response
  within groups of similar tokens built from public text; elsewhere the devices' own, medium; docs/privacy/README.md).`;
const args = cliArgs(USAGE, {
  task: { type: 'string', default: 'classification' },
  data: { type: 'string' },
  model: { type: 'string' },
  rounds: { type: 'string' },
  'rows-per-device': { type: 'string' },
  'eval-rows': { type: 'string' },
  ordering: { type: 'string', default: 'random-reshuffle' },
  'batch-order': { type: 'string', default: 'by-device' },
  defence: { type: 'string' },
});

const DIR = resolve(LOCAL_DIR, 'start');
const DEVICES = 3;
/** GSM8K's sequence length: the run's, and the one its owners approve generation rounds at. */
const GSM8K_SEQ_LEN = 192;
const step = (n: number, msg: string) => console.log(`\n[${n}/6] ${msg}`);

// Simulated capacity profiles: a slow, a middling and a fast device, so the planner gives each its own cut.
const PROFILES = [
  { memoryMB: 128, gflops: 0.2, maxBatchSeconds: 1 },
  { memoryMB: 128, gflops: 0.3, maxBatchSeconds: 1 },
  { memoryMB: 256, gflops: 5, maxBatchSeconds: 1 },
];

async function loadData(perDevice: number, evalRows: number): Promise<{ train: Example[]; evaluation: Example[]; labels: string[]; source: string }> {
  const labels = ['0', '1'];
  if (!args.data) {
    const rows = syntheticSentiment(perDevice * DEVICES + evalRows, 7).map((r) => ({ text: r.text, label: Number(r.label) }));
    return { train: rows.slice(evalRows), evaluation: rows.slice(0, evalRows), labels, source: 'generated sentiment task' };
  }
  const read = async (file: string) =>
    parseShard(await readFile(join(args.data!, file)), 'tsv', labels, { maxBytes: 2 ** 30, maxRows: 10_000_000, maxFieldChars: 100_000 });
  const train = await read('train.tsv');
  const evaluation = await read('dev.tsv');
  return {
    train: train.slice(0, perDevice * DEVICES),
    evaluation: evaluation.slice(0, evalRows),
    labels,
    source: `${args.data} (train.tsv: first ${perDevice * DEVICES} rows, dev.tsv: first ${evalRows})`,
  };
}

run(async () => {
  const rounds = int('rounds', args.rounds, 3);
  await rm(DIR, { recursive: true, force: true });

  step(1, `local stack: S3 server and ${DEVICES} device workers under workerd (127.0.0.1 only)`);
  const stack = await startStack({ dir: join(DIR, 'stack'), devices: DEVICES });
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  try {
    for (const d of stack.devices) console.log(`      ${d.id}: ${d.url.href}`);

    const gsm8k = args.task === 'gsm8k';
    if (!gsm8k && args.task !== 'classification') throw new Error(`--task '${args.task}' is not classification or gsm8k`);
    let modelDir = args.model;
    if (modelDir) {
      step(2, `model: ${modelDir}`);
    } else if (gsm8k) {
      step(2, "model: a tiny Llama (4 blocks, hidden 64, 4 heads on 2 key/value heads, Llama 3's 128,256-token vocabulary and tokenizer), random weights");
      modelDir = join(DIR, 'tiny-llama');
      await writeTinyLlama(modelDir);
    } else {
      step(2, 'model: a tiny GPT-2 (5 blocks, n_embd 64) in the Hugging Face layout, random weights');
      modelDir = join(DIR, 'tiny-gpt2');
      await writeModelFolder(modelDir, initModel(gpt2Config({ nLayer: 5, nEmbd: 64, nHead: 4, nPositions: 64 }), { seed: 0 }));
    }
    const model = await readModelFolder(modelDir);
    const config = model.config;
    // A model whose fp32 token table alone would crowd a Worker's memory runs int8 prefixes on the devices.
    const weights = config.vocabSize * config.nEmbd * 4 > 16 * 2 ** 20 ? ('int8' as const) : ('fp32' as const);
    // Each owner decides what runs on their text: here they approve the segments of cuts 2 and deeper (2 is every
    // device's default minimum), each exported from the same base model, so they know exactly which graphs run. For
    // GSM8K they also approve the tokenizer and that completions' token ids go to the server.
    const cuts = Array.from({ length: config.nLayer - DEFAULT_MIN_CUT }, (_, i) => DEFAULT_MIN_CUT + i);
    const tokenizer = gsm8k
      ? { tokenizer: await sha256Hex(await readFile(join(modelDir, 'tokenizer.json'))), generation: true, seqLen: GSM8K_SEQ_LEN }
      : undefined;
    const serverTokenizer = await readTokenizer(modelDir, config);
    const generated = !gsm8k && !args.data;
    const owners = ownersDefence(args.defence, { generated, tokenizer: serverTokenizer });
    for (const d of stack.devices) {
      const approval = { ...tokenizer, ...(await owners.approval(d)) };
      for (const cut of cuts) await d.approveSegment(model, basename(modelDir), cut, weights, approval);
    }
    console.log(
      `      each device's owner approved the segments of cuts ${DEFAULT_MIN_CUT}..${config.nLayer - 1} (by SHA-256; no device runs below cut ${DEFAULT_MIN_CUT})${gsm8k ? ', the tokenizer, and sending completions as token ids' : ''}`,
    );

    const perDevice = int('rows-per-device', args['rows-per-device'], gsm8k ? 24 : 200);
    const evalCount = int('eval-rows', args['eval-rows'], gsm8k ? 16 : 200);
    const evalFile = join(DIR, 'gsm8k-heldout.jsonl');
    const data = gsm8k
      ? { ...(await gsm8kData(args.data ?? GSM8K_DEFAULT, perDevice * DEVICES, evalCount, evalFile)), evaluation: [] as Example[], labels: [] as string[] }
      : await loadData(perDevice, evalCount);
    step(
      3,
      `data: ${data.source}; ${data.train.length} training rows split over the devices as their owners' private shards${gsm8k ? '' : `, ${data.evaluation.length} held out`}`,
    );
    for (const [i, d] of stack.devices.entries()) {
      const mine = data.train.filter((_, r) => r % DEVICES === i);
      if (gsm8k) await d.uploadShard('private', mine as GenerationExample[], 'generation');
      else
        await d.uploadShard(
          'private',
          (mine as Example[]).map((r) => ({ text: r.text, text_pair: r.textPair, label: data.labels[r.label] })),
          data.labels,
        );
      console.log(`      ${d.id}: ${mine.length} rows`);
    }

    step(4, 'training server: HTTP API on 127.0.0.1');
    const operatorToken = crypto.randomUUID();
    server = await startServer({
      host: '127.0.0.1',
      port: 0,
      operatorToken,
      roundSecret: stack.roundSecret,
      s3: stack.s3.config,
      backend: 'auto',
      log: process.env.SPLITFROZEN_DEBUG ? (m) => console.error(m) : () => {},
    });
    console.log(`      backend: ${server.backend}`);
    console.log(`      live dashboard while this runs: ${server.url}/ (operator token ${operatorToken})`);
    const client = new ServerClient(server.url, operatorToken);

    const profiles = gsm8k ? GSM8K_PROFILES : PROFILES;
    step(
      5,
      gsm8k
        ? `run: causal-LM LoRA r=8 on q/k/v/o_proj, loss on the answers only, ${args.ordering} client order (${args['batch-order']}), ${rounds} rounds`
        : `run: LoRA r=8 on c_attn, ${args.ordering} client order (${args['batch-order']}), ${rounds} rounds`,
    );
    const record = await client.createRun({
      model: modelDir,
      task: gsm8k
        ? gsm8kRunTask(evalFile)
        : { labels: data.labels, evalRows: data.evaluation.map((r) => ({ text: r.text, text_pair: r.textPair, label: data.labels[r.label] })) },
      devices: stack.devices.map((d, i) => ({ id: d.id, url: d.url.href, profile: { ...profiles[i], weights } })),
      ordering: { kind: args.ordering },
      lora: gsm8k
        ? { rank: 8, alpha: 16, dropout: 0.05, targets: ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj'] }
        : { rank: 8, alpha: 16, dropout: 0.05, targets: ['attn.c_attn'] },
      optimizer: { lr: gsm8k ? 0.003 : 0.01, warmupSteps: 5, schedule: 'linear' },
      // The server checks both orders and says what is wrong with either.
      training: {
        batchSize: gsm8k ? 8 : 16,
        seqLen: gsm8k ? GSM8K_SEQ_LEN : 48,
        dtype: 'fp32',
        seed: 0,
        rounds,
        batchOrder: args['batch-order'] as 'by-device' | 'interleaved',
      },
    });
    // What each cut gives away: the server's held-out rows as the attacker's text, a sample of the device's shard as
    // the victim (npm start plays every owner, so it can score the attack on their text).
    const texts = (rows: Array<Example | GenerationExample>) => rows.map((r) => ('prompt' in r ? r.prompt : textInput(r)));
    const attacker = gsm8k ? texts(parseGenerationShard((await readFile(evalFile, 'utf8')).split('\n'), DEFAULT_LIMITS)) : texts(data.evaluation);
    console.log(
      "\n| device | profile | cut | est. memory | est. batch time | owner's defence | tokens a curious server recovers: undefended | at the owner's defence |\n|---|---|---|---|---|---|---|---|",
    );
    for (const [i, d] of stack.devices.entries()) {
      const c = record.cuts[d.id];
      const sample = texts(data.train.filter((_, r) => r % DEVICES === i).slice(0, 50));
      // npm start plays every owner: it reads the defence each set for the segment of this device's cut.
      // Retried: under a loaded CI machine one such call to workerd failed in passing ("fetch failed").
      const policy = await withRetries(
        async () => (await (await fetch(new URL('/approvals', d.url), { headers: { authorization: `Bearer ${d.ownerToken}` } })).json()) as DevicePolicy,
        { attempts: 4, backoffMs: 500 },
      );
      const defence = defenceFor(policy, (await deviceSegment(model, c.cut, weights)).sha256);
      const [undefended, atOwners] = (
        await privacyReport(model, c.cut, [{ kind: 'output', defence: LEVELS.off }, owners.setting(defence)], attacker, sample, {
          seqLen: 48,
          tokenizer: serverTokenizer,
          ...(generated ? { publicTexts: publicGeneratedText() } : {}),
        })
      ).map((r) => r.strongest);
      console.log(
        `| ${d.id} | ${profiles[i].gflops} GFLOP/s, ${profiles[i].maxBatchSeconds} s/batch, ${profiles[i].memoryMB} MB | ${c.cut} | ${c.memoryMB} MB | ${c.batchSeconds} s | ${describeDefence(defence)} | ${percent(undefended.recovery)} | ${percent(atOwners.recovery)} (guessing: ${percent(atOwners.majority)}) |`,
      );
    }
    console.log(
      `(the strongest attack${gsm8k ? ' on the questions' : ''}: nearest neighbour, white-box search, learned inversion, averaging copies, and against groups the likeliest original of each token found; npm run privacy, docs/privacy/)`,
    );
    if (gsm8k) console.log("(a generation batch also carries each completion's token ids to the server: what the loss needs, and what the owners approved)");
    console.log(`adapters train on blocks ${record.deepestCut}..${config.nLayer - 1}; devices with shallower cuts are completed forward-only on the server\n`);

    let view: RunView | undefined;
    console.log(
      gsm8k
        ? GSM8K_HEADER
        : '| round | client order | train loss | eval loss | eval accuracy | device forward (s) | server train (s) | server idle (s) | MB moved | devices reused | wall (s) |',
    );
    console.log('|---|---|---|---|---|---|---|---|---|---|---|');
    for (let r = 0; r < rounds; r++) {
      view = await followRound(client, record.id, rounds);
      console.log(roundRow(view.metrics.at(-1)!));
    }

    step(6, 'adapter');
    const out = join(DIR, 'adapter');
    await pullAdapter(client, record.id, 'latest', out);
    const last = view!.metrics.at(-1)!;
    if (gsm8k) {
      printSamples(last);
      console.log(
        `      exact match after ${rounds} rounds (lm-evaluation-harness's gsm8k: ${last.evalExactMatch?.shots ?? 0}-shot prompts, its two filters): strict-match ${((last.evalExactMatch?.strict ?? 0) * 100).toFixed(1)}%, flexible-extract ${((last.evalExactMatch?.flexible ?? 0) * 100).toFixed(1)}% of ${last.samples?.length ?? 0} generated answers; held-out loss ${last.evalLoss?.toFixed(3)} on ${last.evalRows} problems`,
      );
      console.log('      (a tiny random model cannot solve GSM8K: what this shows is the machinery, loss falling and answers generated)');
    } else {
      console.log(
        `      eval accuracy after ${rounds} rounds: ${((last.evalAccuracy ?? 0) * 100).toFixed(1)}% on ${last.evalRows} held-out rows (chance: ${(100 / data.labels.length).toFixed(0)}%)`,
      );
    }
    console.log(`      PEFT adapter (round ${last.round}): ${out}/{${ADAPTER_CONFIG},${ADAPTER_WEIGHTS}}`);
    console.log(`      in storage: s3://${stack.s3.config.bucket}/runs/${record.id}/adapters/${last.round}/ (data kept under ${join(DIR, 'stack', 's3')})`);
    console.log(
      `      against a running server: SPLITFROZEN_URL=<server> SPLITFROZEN_OPERATOR_TOKEN=<token> npm run cli -- pull --run ${record.id} --out ./adapter`,
    );
  } finally {
    await server?.close();
    await stack.stop();
  }
});
