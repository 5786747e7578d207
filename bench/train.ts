/**
 * npm run bench:train — the server's training step: cut 2, the blocks above it with LoRA r=8 on c_attn, final layer
 * norm, a 2-class head on the last token, AdamW, batch 8 x 128 (--batch), random weights. Tokens/s on every
 * backend that initialises here (TensorFlow.js's, and ort-cpu / ort-webgpu: the adapted blocks on onnxruntime-node),
 * stepping as the server does (one step in flight), at GPT-2 small's
 * shape (blocks [2, 12)), with the reference in the same run: the PyTorch CPU anchor
 * (../shared/anchors/torch_cpu_server_step.py) where Debian's python3-torch is installed, or with --reference gpu the
 * GPU anchor (torch_server_step.py, PyTorch + PEFT at the same batch; bench/gpu.sh runs it). --small: a 6-block
 * n_embd-256 model and no reference, for a quick look. --profile adds where one step's time goes on each backend, by
 * kernel (TF.js) or by operator (onnxruntime's profiler). Each backend's loss and gradients on one step of a tiny model are compared with the cpu backend's.
 * --backends: which to try (default: all but cpu, which takes minutes per step). Under `llama`: the causal-LM step at
 * Llama-3.2-1B's width beside the PyTorch CPU anchor torch_cpu_llama_step.py. JSON on stdout.
 */
import { printReport } from './report.ts';
import { runAnchor, type AnchorResult } from './anchor.ts';
import { llamaStep } from './train-llama.ts';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { gpt2Config } from '../core/model/gpt2/config.ts';
import { initModel } from '../core/model/gpt2/init.ts';
import { Random } from '../core/random.ts';
import { BACKENDS, initBackend, type BackendName } from '../gpu-server/backends/tfjs/runtime.ts';
import { Trainer, type TrainBatch, type TrainSpec } from '../gpu-server/train/trainer.ts';
import type { PendingStep } from '../gpu-server/train/pending-step.ts';
import { getThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { kernelProfile, type KernelTime } from './profile.ts';
import { maxRelativeDifference, tinyStepGradients } from '../tests/support/step-parity.ts';
import type { OpTime, OrtOptions } from '../gpu-server/backends/onnxruntime/blocks.ts';
import { cliArgs, fail, int } from '../infra/cli.ts';

const args = cliArgs(
  'usage: npm run bench:train -- [--small] [--steps N] [--batch B] [--profile] [--backends webgpu,wasm,cpu,...] [--reference cpu|gpu] [--anchors DIR] [--llama-blocks N]',
  {
    reference: { type: 'string', default: 'cpu' },
    anchors: { type: 'string', default: resolve('../shared/anchors') },
    small: { type: 'boolean' },
    profile: { type: 'boolean' },
    steps: { type: 'string' },
    batch: { type: 'string' },
    backends: { type: 'string', default: BACKENDS.filter((b) => b !== 'cpu').join(',') },
    'llama-blocks': { type: 'string' },
  },
);
if (args.reference !== 'cpu' && args.reference !== 'gpu') fail(`--reference must be cpu or gpu, got '${args.reference}'`);
const log = (m: string) => process.stderr.write(`[bench:train] ${m}\n`);
const B = int('batch', args.batch, 8);
const T = 128;
const CUT = 2;
const STEPS = int('steps', args.steps, 2);
/**
 * Steps before the timed ones: a training run's steady state, which memory reaches only after a few steps
 * (onnxruntime's arenas and the heap grow over the first two: measured in page faults, ~170k in the first step, ~50k
 * in the second, under 1k from the third).
 */
const WARM_UP = 3;
const LLAMA_BLOCKS = int('llama-blocks', args['llama-blocks'], 2);
const config = args.small ? gpt2Config({ nLayer: 6, nEmbd: 256, nHead: 8, nPositions: T }) : gpt2Config({ nPositions: T });
log(`model: ${config.nLayer} blocks, n_embd ${config.nEmbd}; server blocks [${CUT}, ${config.nLayer}), batch ${B} x ${T}`);
const model = initModel(config, { seed: 0 });
const rng = new Random(1);
const batch: TrainBatch = {
  cut: CUT,
  rows: B,
  seqLen: T,
  hidden: Float32Array.from({ length: B * T * config.nEmbd }, () => rng.normal()),
  mask: new Int32Array(B * T).fill(1),
  labels: Int32Array.from({ length: B }, (_, i) => i % 2),
};

const TRAIN_SPEC: TrainSpec = {
  lora: { rank: 8, alpha: 16, dropout: 0, targets: ['attn.c_attn'] },
  optimizer: {},
  schedule: { lr: 2e-4, warmupSteps: 0, kind: 'constant' },
  seed: 0,
};

type Result = { tokensPerSecond: number; msPerStep: number; threads?: number; profile?: KernelTime[] | OpTime[] | string } | { skipped: string };

/** onnxruntime's per-node times a step after the warm-up, summed by operator, on a trainer of its own. */
async function ortProfile(blocks: OrtOptions): Promise<OpTime[]> {
  const trainer = new Trainer(model, TRAIN_SPEC, CUT, { firstBlock: CUT, blocks: { ...blocks, profile: true } });
  const steps = 2;
  for (let i = 0; i < WARM_UP + steps; i++) await trainer.step(batch).result();
  const profile = await trainer.onnxruntimeProfile({ steps, warmUp: WARM_UP });
  trainer.dispose();
  return profile.slice(0, 12);
}
const results: Record<string, Result> = {};
for (const backend of args.backends!.split(',') as BackendName[]) {
  let blocks: OrtOptions | undefined;
  try {
    blocks = (await initBackend(backend)).blocks;
  } catch (e) {
    results[backend] = { skipped: (e as Error).message.replace(/^no backend initialised: [^:]+: /, '') };
    log(`${backend}: skipped (${results[backend] && 'skipped' in results[backend] ? results[backend].skipped : ''})`);
    continue;
  }
  log(`${backend}: ${WARM_UP} warm-up steps, then ${STEPS}`);
  // Only the server's blocks: the blocks below the cut run on devices.
  const trainer = new Trainer(model, TRAIN_SPEC, CUT, { firstBlock: CUT, blocks });
  for (let i = 0; i < WARM_UP; i++) await trainer.step(batch).result();
  const started = performance.now();
  // As the server steps: the next step is issued before the previous one's loss is read.
  let inFlight: PendingStep | undefined;
  for (let i = 0; i < STEPS; i++) {
    const step = trainer.step(batch);
    await inFlight?.result();
    inFlight = step;
  }
  await inFlight?.result();
  const ms = (performance.now() - started) / STEPS;
  // A backend without kernel timers (WebGPU without timestamp queries) gets the reason instead of a profile.
  const profile = args.profile
    ? await (blocks ? ortProfile(blocks) : kernelProfile(backend, () => trainer.step(batch).result()).catch((e: Error) => e.message))
    : undefined;
  trainer.dispose();
  tf.disposeVariables();
  for (const k of Array.isArray(profile) ? profile : [])
    log(
      `  ${(100 * k.share).toFixed(1).padStart(5)}%  ${String(k.ms).padStart(8)} ms  ${'kernel' in k ? `${k.calls} x ${k.kernel} ${k.inputShapes}` : `${k.op} (${k.graph})`}`,
    );
  results[backend] = {
    tokensPerSecond: Math.round((B * T) / (ms / 1000)),
    msPerStep: Math.round(ms),
    ...(backend === 'wasm' ? { threads: getThreadsCount() } : {}),
    ...(profile ? { profile } : {}),
  };
}

// Same numbers everywhere: one step of a tiny model on each backend that ran, against the cpu backend.
const parity: Record<string, number> = {};
await initBackend('cpu');
const onCpu = await tinyStepGradients();
for (const backend of Object.keys(results).filter((b) => b !== 'cpu' && !('skipped' in results[b]!))) {
  const { blocks } = await initBackend(backend as BackendName);
  parity[backend] = Number(maxRelativeDifference(await tinyStepGradients({ blocks }), onCpu).toExponential(2));
  log(`${backend}: one tiny step's loss and gradients within ${parity[backend]} (relative) of the cpu backend's`);
}

// The reference, in the same run: PyTorch on the same hardware, same shapes (../shared/anchors/README.md).
let reference: Record<string, unknown> = { skipped: 'not with --small' };
if (!args.small) {
  const gpu = args.reference === 'gpu';
  log(`reference: PyTorch ${gpu ? `GPU anchor, batch ${B}` : `CPU anchor, ${cpus().length} threads`}`);
  const script = join(args.anchors!, gpu ? 'torch_server_step.py' : 'torch_cpu_server_step.py');
  const anchor = (env: NodeJS.ProcessEnv) => runAnchor(script, [gpu ? B : cpus().length], { python: gpu ? 'python3' : '/usr/bin/python3', env });
  // PyTorch as installed, and (where this run has them) under glibc's malloc settings that onnxruntime gets: they
  // speed it up too. The ratio is taken to the faster of the two.
  const { GLIBC_TUNABLES: tunables, ...plain } = process.env;
  const runs = [{ glibcTunables: null, ...(await anchor(plain)) }, ...(tunables && !gpu ? [{ glibcTunables: tunables, ...(await anchor(process.env)) }] : [])];
  const tps = (r: AnchorResult) => Number((r as { fp32?: { tokens_per_s?: number } }).fp32?.tokens_per_s);
  const ran = runs.filter((r) => Number.isFinite(tps(r)));
  reference = ran.length
    ? { ...ran.reduce((x, y) => (tps(y) > tps(x) ? y : x)), ...(ran.length > 1 ? { runs } : {}) }
    : { skipped: String((runs[0] as { skipped?: string }).skipped) };
}
const refTps = Number((reference as { fp32?: { tokens_per_s?: number } }).fp32?.tokens_per_s);
const llamaBackend = (args.backends!.split(',') as BackendName[]).find((x) => results[x] && !('skipped' in results[x]!));
const llama = args.small
  ? { skipped: 'not with --small' }
  : llamaBackend
    ? await llamaStep({ backend: llamaBackend, blocks: LLAMA_BLOCKS, warmUp: WARM_UP, steps: STEPS, anchors: args.anchors!, log })
    : { skipped: 'no backend initialised' };
printReport('server training step', {
  shape: {
    nLayer: config.nLayer,
    nEmbd: config.nEmbd,
    nHead: config.nHead,
    cut: CUT,
    lora: 'r=8, alpha 16 on c_attn',
    head: '2 classes',
    batch: B,
    seq: T,
    // What the trainer does on ort-*; the anchor runs the whole block.
    lastBlock: "ort-*: pooled (after c_attn, each row's last token only: the head reads no other); PyTorch and TF.js: whole",
  },
  backends: results,
  maxRelativeDifferenceToCpu: parity,
  reference: { [args.reference === 'gpu' ? 'torchGpu' : 'torchCpu']: reference },
  ratioToTorch: Number.isFinite(refTps)
    ? Object.fromEntries(Object.entries(results).flatMap(([k, v]) => ('tokensPerSecond' in v ? [[k, Number((v.tokensPerSecond / refTps).toFixed(3))]] : [])))
    : 'no reference run',
  llama,
});
