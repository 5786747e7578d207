/**
 * npm run e2e:llama-1b — Llama-3.2-1B end to end at true size on a CPU host: make-model writes the random-weight
 * checkpoint (BF16), export-prefix its cut-1 int8 segment (external data, token table outside), one device in workerd
 * at cut 1 runs a short GSM8K round through the local S3 server and the training server (its own process, ort-cpu),
 * and the adapter and merged model are pulled. Wall time per phase and peak memory of each process go to a JSON file.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { parseModelConfig } from '../core/model/family.ts';
import { LLAMA_SIZES, TINY_LLAMA } from '../core/model/llama/config.ts';
import { DeviceClient } from '../core/wire/device-client.ts';
import type { RoundStatus } from '../core/wire/round.ts';
import { ServerClient } from '../gpu-server/api/client.ts';
import { pullAdapter, writeMerged } from '../gpu-server/api/pull.ts';
import { cliArgs, fail, int, run } from '../infra/cli.ts';
import { approvedSpecialTokens } from '../infra/local/device.ts';
import { LOCAL_DIR } from '../infra/local/paths.ts';
import { descendantsNamed, PeakSampler } from '../infra/local/proc-memory.ts';
import { startServerProcess, type ServerProcess } from '../infra/local/server-process.ts';
import { startStack } from '../infra/local/stack.ts';
import { Phases, since } from './phases.ts';
import { followRound, roundRow, untrained } from './round-progress.ts';
import { GSM8K_DEFAULT, GSM8K_HEADER, gsm8kData, gsm8kRunTask, printSamples } from './start-gsm8k.ts';
import { inspectSegment } from '../workers/device/src/segment-check.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
process.env.WRANGLER_LOG ??= 'warn';

const USAGE = `usage: npm run e2e:llama-1b -- [--size llama-3.2-1b|tiny] [--work DIR] [--data FILE] [--problems N] [--eval-problems N]
       [--batch N] [--seq-len N] [--new-tokens N] [--generations N] [--backend ort-cpu|auto|...] [--out FILE.json]
--size: the model's shape (default llama-3.2-1b; tiny: make-model's tiny Llama, for a quick check).
--work: where the checkpoint, the prefix and the run's files go (default .local/llama-1b/SIZE); a checkpoint or prefix
  already there is reused.
--data: GSM8K JSON lines (default ../shared/datasets/gsm8k/train.jsonl; skipped, with a message, when absent).
--out: the JSON report (default docs/benchmarks/llama-1b-e2e-DATE-cpu.json at llama-3.2-1b, WORK/e2e.json otherwise).`;
const args = cliArgs(USAGE, {
  size: { type: 'string', default: 'llama-3.2-1b' },
  work: { type: 'string' },
  data: { type: 'string' },
  problems: { type: 'string' },
  'eval-problems': { type: 'string' },
  batch: { type: 'string' },
  'seq-len': { type: 'string' },
  'new-tokens': { type: 'string' },
  generations: { type: 'string' },
  backend: { type: 'string', default: 'ort-cpu' },
  out: { type: 'string' },
});

const size = args.size!;
if (size !== 'tiny' && !Object.hasOwn(LLAMA_SIZES, size)) fail(`--size '${size}' is not one of tiny, ${Object.keys(LLAMA_SIZES).join(', ')}`);
const shape = size === 'tiny' ? TINY_LLAMA : LLAMA_SIZES[size as keyof typeof LLAMA_SIZES];
const WORK = resolve(args.work ?? join(LOCAL_DIR, 'llama-1b', size));
const DATA = resolve(args.data ?? GSM8K_DEFAULT);
const CUT = 1;
// Short: a few problems, one device, 1 x 128 a batch (what fits a Worker at 1B's width: docs/device.md).
const settings = {
  problems: int('problems', args.problems, 16),
  evalProblems: int('eval-problems', args['eval-problems'], 4),
  batchSize: int('batch', args.batch, 1),
  seqLen: int('seq-len', args['seq-len'], 128),
  generate: { maxNewTokens: int('new-tokens', args['new-tokens'], 16), limit: int('generations', args.generations, 2) },
};
const date = new Date().toISOString().slice(0, 10);
const OUT = resolve(args.out ?? (size === 'llama-3.2-1b' ? `docs/benchmarks/llama-1b-e2e-${date}-cpu.json` : join(WORK, 'e2e.json')));

const MODEL = join(WORK, 'model');
const PREFIX = join(WORK, 'prefix');
const files = { onnx: join(PREFIX, 'prefix.onnx'), data: join(PREFIX, 'prefix.onnx.data'), table: join(PREFIX, 'token-table.safetensors') };
const makeModelArgs = ['--arch', 'llama', ...(size === 'tiny' ? [] : ['--size', size]), '--out', MODEL];
const exportArgs = ['--model', MODEL, '--cut', String(CUT), '--out', files.onnx, '--weights', 'int8', '--external-data', '--token-table', files.table];

const phases = new Phases(6, new PeakSampler(500));
const { sampler } = phases;
sampler.watch('driver', () => [process.pid]);

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** A checkpoint from an earlier run, if WORK holds one of this shape (tokenizer.json is written last). */
async function existingModel(): Promise<boolean> {
  if (!existsSync(join(MODEL, 'tokenizer.json'))) return false;
  const c = JSON.parse(await readFile(join(MODEL, 'config.json'), 'utf8')) as { hidden_size: number; num_hidden_layers: number };
  if (c.hidden_size !== shape.nEmbd || c.num_hidden_layers !== shape.nLayer)
    fail(`${MODEL} holds a model of hidden size ${c.hidden_size} and ${c.num_hidden_layers} blocks, not ${size}: give another --work`);
  return true;
}

/**
 * The prefix files from an earlier run, if all there, newer than the checkpoint, and of a graph a device still runs
 * (one exported before 2026-12-07 quantized the whole batch with one scale, which devices now refuse).
 */
async function existingPrefix(): Promise<boolean> {
  const made = (await stat(join(MODEL, 'tokenizer.json'))).mtimeMs;
  const times = await Promise.all(Object.values(files).map((f) => stat(f).catch(() => undefined)));
  return times.every((t) => t && t.mtimeMs >= made) && !('refusal' in inspectSegment(await readFile(files.onnx)));
}

const wasm = (s: RoundStatus) => (s.wasmMemoryBytes ? `, WebAssembly ${Math.round(s.wasmMemoryBytes / 2 ** 20)} MB` : '');

run(async () => {
  if (!existsSync(DATA)) {
    console.log(`skipped: no GSM8K data at ${DATA} (see ../shared/datasets/README.md, or give --data FILE)`);
    return;
  }
  console.log(`Llama ${size} end to end; work folder ${WORK}; report ${OUT}`);
  await mkdir(WORK, { recursive: true });
  const modelReused = await existingModel();
  await phases.run(
    1,
    'make-model',
    `checkpoint: npm run make-model -- ${makeModelArgs.join(' ')}`,
    () => (modelReused ? Promise.resolve() : phases.child('make-model', 'scripts/make-model.ts', makeModelArgs)),
    { reused: modelReused },
  );
  const prefixReused = await existingPrefix();
  await phases.run(
    2,
    'export-prefix',
    `device prefix at cut ${CUT}: npm run export-prefix -- ${exportArgs.join(' ')}`,
    async () => {
      if (prefixReused) return;
      await mkdir(PREFIX, { recursive: true });
      await phases.child('export-prefix', 'scripts/export-prefix.ts', exportArgs);
    },
    { reused: prefixReused },
  );
  const prefixBytes = Object.fromEntries(await Promise.all(Object.entries(files).map(async ([k, f]) => [k, (await stat(f)).size])));
  const runDir = join(WORK, 'run');
  await rm(runDir, { recursive: true, force: true });
  const evalFile = join(runDir, 'gsm8k-heldout.jsonl');
  // The owner accepts cut 1 (the default minimum is 2, which no Worker fits at 1B's width).
  const stack = await phases.run(3, 'stack', 'local stack: S3 server and one device worker under workerd (MIN_CUT 1)', () =>
    startStack({ dir: join(runDir, 'stack'), devices: 1, deviceVars: { MIN_CUT: '1' } }),
  );
  let server: ServerProcess | undefined;
  let stackStopped = false;
  const stopStack = () => (stackStopped ? Promise.resolve() : ((stackStopped = true), stack.stop()));
  try {
    const device = stack.devices[0];
    // Two: wrangler's proxy and the runtime that runs the device Worker (the larger).
    sampler.watch('workerd', () => descendantsNamed(process.pid, 'workerd'));
    await mkdir(runDir, { recursive: true });
    const data = await gsm8kData(DATA, settings.problems, settings.evalProblems, evalFile);
    const operatorToken = crypto.randomUUID();
    const record = await phases.run(
      4,
      'approve, server, run',
      "device owner's approval and shard, training server (its own process), run",
      async () => {
        // What the owner exported is what they approve: the server's own export must hash the same, or the device refuses it.
        const approval = {
          sha256: await sha256File(files.onnx),
          weights: await sha256File(files.data),
          tokenTable: await sha256File(files.table),
          tokenizer: await sha256File(join(MODEL, 'tokenizer.json')),
          specialTokens: approvedSpecialTokens(parseModelConfig(await readFile(join(MODEL, 'config.json'), 'utf8'), join(MODEL, 'config.json'))),
          model: basename(MODEL),
          cut: CUT,
          generation: true,
          seqLen: settings.seqLen,
        };
        await device.approve(approval);
        await device.uploadShard('gsm8k', data.train, 'generation');
        console.log(`      ${device.id}: approved segment ${approval.sha256.slice(0, 12)}..., ${data.train.length} problems; ${data.source}`);
        server = await startServerProcess({
          s3: stack.storage,
          roundSecret: stack.roundSecret,
          operatorToken,
          env: { SPLITFROZEN_DATA_DIRS: WORK, SPLITFROZEN_BACKEND: args.backend! },
        });
        sampler.watch('server', () => [server!.child.pid!]);
        console.log(`      server ${server.url} (backend ${args.backend}); dashboard at ${server.url}/ with operator token ${operatorToken}`);
        return new ServerClient(server.url, operatorToken).createRun({
          model: MODEL,
          task: gsm8kRunTask(evalFile, settings.generate),
          devices: [{ id: device.id, url: device.url.href, cut: CUT, profile: { memoryMB: 128, weights: 'int8' } }],
          ordering: { kind: 'fixed', order: [device.id] },
          lora: { rank: 8, alpha: 16, dropout: 0.05, targets: ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj'] },
          // LoRA's usual rate at this size (at 3e-3 the held-out loss rose by 5.7 and the server rolled the batches back).
          optimizer: { lr: 2e-4, warmupSteps: 2, schedule: 'linear' },
          training: { batchSize: settings.batchSize, seqLen: settings.seqLen, dtype: 'fp32', seed: 0, rounds: 1 },
        });
      },
      { beat: ['server'] },
    );
    const client = new ServerClient(server!.url, operatorToken);
    const deviceClient = new DeviceClient(device.url, device.id, stack.roundSecret);
    let deviceStatus: RoundStatus | undefined;
    let polling = false;
    // One status call at a time: a device busy in a batch answers late.
    const poll = setInterval(() => {
      if (polling) return;
      polling = true;
      deviceClient
        .roundStatus(record.id, 0)
        .then((s) => (deviceStatus = s))
        .catch(() => undefined)
        .finally(() => (polling = false));
    }, 1000);
    const view = await phases.run(
      5,
      'round',
      `one round: ${data.train.length} problems at ${settings.batchSize} x ${settings.seqLen}, LoRA r=8 on q/k/v/o_proj, evaluation`,
      async () => {
        console.log(GSM8K_HEADER);
        try {
          const v = await followRound(client, record.id, 1, {
            every: 1,
            heartbeatSeconds: 15,
            extra: () =>
              [
                deviceStatus && `| device ${deviceStatus.batchesDone}/${deviceStatus.batchesTotal} batches${wasm(deviceStatus)}`,
                phases.memory('server'),
                phases.memory('workerd'),
                `${since(phases.started)} s`,
              ]
                .filter(Boolean)
                .join(' | '),
          });
          const m = v.metrics.at(-1)!;
          console.log('|---|---|---|---|---|---|---|---|---|---|---|\n' + roundRow(m));
          for (const line of untrained(m)) console.log(line);
          return v;
        } finally {
          clearInterval(poll);
        }
      },
    );
    deviceStatus = await deviceClient.roundStatus(record.id, 0);
    const out = join(runDir, 'adapter');
    const pulled = await phases.run(
      6,
      'pull',
      'pull: the PEFT adapter over HTTP, then the merged model (after the server stops)',
      async () => {
        const adapter = await pullAdapter(client, record.id, 'latest', out);
        await sampler.sample();
        await server!.stop();
        await stopStack();
        const merged = await writeMerged(MODEL, adapter, record.spec.task, out);
        return { adapter, merged };
      },
      { beat: ['driver'] },
    );
    const peaks = await sampler.stop();
    const last = view.metrics.at(-1)!;
    printSamples(last);
    const report = {
      benchmark: 'llama-1b-e2e',
      date,
      host: { cpus: cpus().length, cpu: cpus()[0]?.model, memoryGB: Math.round(totalmem() / 2 ** 30), node: process.version },
      commands: {
        run: `npm run e2e:llama-1b -- ${process.argv.slice(2).join(' ')}`.trim(),
        makeModel: `npm run make-model -- ${makeModelArgs.join(' ')}`,
        exportPrefix: `npm run export-prefix -- ${exportArgs.join(' ')}`,
        pull: 'npm run cli -- pull --run ID --out DIR --merged --model MODEL (the same code, in process)',
      },
      shapes: {
        size,
        model: shape,
        vocab: 128256,
        cut: CUT,
        prefix: { weights: 'int8, external data, token table outside the graph', bytes: prefixBytes },
        training: { ...settings, device: device.id, backend: args.backend, lora: 'r=8 on q/k/v/o_proj, blocks 1..' },
      },
      data: data.source,
      wallSeconds: Number(since(phases.started)),
      phases: phases.list,
      memoryMB: {
        server: peaks.server?.peakMB,
        workerd: peaks.workerd?.peakMB,
        workerdProcesses: sampler.processes('workerd').map((m) => m.peakMB),
        makeModel: peaks['make-model']?.peakMB,
        exportPrefix: peaks['export-prefix']?.peakMB,
        driver: Math.round(process.resourceUsage().maxRSS / 1024),
        note: "peak resident (VmHWM) of each process. workerd: the runtime that ran the device Worker, the larger of its two processes (the other is wrangler's proxy), the whole runtime: workerd has no per-isolate figure. driver: this script (wrangler, the merge), not s3rver",
      },
      worker: {
        tokens: deviceStatus.tokens,
        forwardMs: Math.round(deviceStatus.forwardMs),
        tokensPerSecond: Math.round(deviceStatus.tokens / (deviceStatus.forwardMs / 1000)),
        wasmMemoryMB: deviceStatus.wasmMemoryBytes && Math.round(deviceStatus.wasmMemoryBytes / 2 ** 20),
        note: "what the Worker reports of itself: onnxruntime's WebAssembly memory (its JS heap has no figure in workerd)",
      },
      round: { ...last, samples: undefined },
      outputs: {
        adapterBytes: Object.fromEntries(Object.entries(pulled.adapter).map(([k, v]) => [k, v.byteLength])),
        merged: { dir: pulled.merged.dir, kind: pulled.merged.kind },
      },
    };
    await mkdir(resolve(OUT, '..'), { recursive: true });
    await writeFile(OUT, JSON.stringify(report, null, 2) + '\n');
    console.log(
      `\nwall ${report.wallSeconds} s; peak resident: server ${report.memoryMB.server} MB, workerd ${report.memoryMB.workerd} MB; the Worker's WebAssembly memory ${report.worker.wasmMemoryMB ?? '-'} MB\nadapter: ${out}; merged model: ${pulled.merged.dir} (${pulled.merged.kind}); report: ${OUT}`,
    );
  } finally {
    await server?.stop().catch(() => undefined);
    await stopStack().catch(() => undefined);
    await sampler.stop();
  }
});
