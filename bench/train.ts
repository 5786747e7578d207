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
import { execFile } from 'node:child_process';
import { cpus } from 'node:os';
import { promisify } from 'node:util';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { gpt2Config } from '../core/model/gpt2/config.ts';
import { llamaConfig } from '../core/model/llama/config.ts';
import { initLlama } from '../core/model/llama/init.ts';
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
  try {
    const anchor = async (env: NodeJS.ProcessEnv) => {
      // Debian's OpenBLAS picks a slow generic kernel when these are set.
      delete env.OPENBLAS_CORETYPE;
      delete env.OPENBLAS_L2_SIZE;
      const script = join(args.anchors!, gpu ? 'torch_server_step.py' : 'torch_cpu_server_step.py');
      const { stdout } = await promisify(execFile)(gpu ? 'python3' : '/usr/bin/python3', [script, String(gpu ? B : cpus().length)], { env, timeout: 600_000 });
      return JSON.parse(stdout.trim().split('\n').at(-1)!) as { fp32?: { tokens_per_s?: number } };
    };
    // PyTorch as installed, and (where this run has them) under glibc's malloc settings that onnxruntime gets: they
    // speed it up too. The ratio is taken to the faster of the two.
    const { GLIBC_TUNABLES: tunables, ...plain } = process.env;
    const runs = [
      { glibcTunables: null, ...(await anchor({ ...plain })) },
      ...(tunables && !gpu ? [{ glibcTunables: tunables, ...(await anchor({ ...process.env })) }] : []),
    ];
    reference = { ...runs.reduce((a, b) => (Number(b.fp32?.tokens_per_s) > Number(a.fp32?.tokens_per_s) ? b : a)), ...(runs.length > 1 ? { runs } : {}) };
  } catch (e) {
    const why = String((e as { stderr?: string }).stderr || (e as Error).message);
    reference = {
      skipped:
        /No module named 'torch'|ENOENT/.test(why) && !gpu
          ? 'needs Debian python3-torch: apt-get install -y python3-torch libopenblas0-pthread'
          : why.trim().split('\n').at(-1),
    };
  }
}
const refTps = Number((reference as { fp32?: { tokens_per_s?: number } }).fp32?.tokens_per_s);
const llama = args.small ? { skipped: 'not with --small' } : await llamaStep();
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

/**
 * The server's causal-LM step at Llama-3.2-1B's width (d 2048, GQA 32/8, SwiGLU 8192, tied LM head over 128,256
 * tokens), LoRA r=16 on q_proj and v_proj, loss on every token, batch 2 x 128: the shape of the PyTorch anchor
 * torch_cpu_llama_step.py, run beside it, two server blocks (--llama-blocks: all 16 are Llama-3.2-1B's whole server
 * side). On the WASM backend this does not fit: the tied LM head is 1 GB in fp32, held as [V, d] and [d, V] (both
 * MatMuls plain) and packed once more by XNNPACK for each, past WebAssembly's 4 GB before the blocks; the result then
 * says so. Under ort-*, the blocks and the head run on onnxruntime in native memory, and TF.js holds neither.
 */
async function llamaStep() {
  const [b, t] = [2, 128];
  const c = llamaConfig({ nLayer: LLAMA_BLOCKS });
  const backend = (args.backends!.split(',') as BackendName[]).find((x) => results[x] && !('skipped' in results[x]!));
  if (!backend) return { skipped: 'no backend initialised' };
  const { blocks } = await initBackend(backend);
  log(`llama: Llama-3.2-1B width, ${LLAMA_BLOCKS} server blocks, batch ${b} x ${t}, on ${backend}`);
  const model = initLlama(c, { seed: 2 });
  const r = new Random(2);
  let ours: Record<string, unknown>;
  try {
    // On onnxruntime the blocks' weights live there only (a Trainer's TF.js model then holds the heads alone).
    const trainer = new Trainer(
      model,
      {
        lora: { rank: 16, alpha: 32, dropout: 0, targets: ['self_attn.q_proj', 'self_attn.v_proj'] },
        optimizer: {},
        schedule: { lr: 2e-4, warmupSteps: 0, kind: 'constant' },
        seed: 0,
      },
      0,
      { task: 'causal-lm', blocks },
    );
    const step: TrainBatch = {
      cut: 0,
      rows: b,
      seqLen: t,
      hidden: Float32Array.from({ length: b * t * c.nEmbd }, () => r.normal()),
      mask: new Int32Array(b * t).fill(1),
      labels: Int32Array.from({ length: b * t }, (_, i) => (i * 7919) % c.vocabSize),
    };
    await trainer.step(step).result();
    const started = performance.now();
    await trainer.step(step).result();
    const ms = performance.now() - started;
    // Greedy decoding with the KV cache through every block and the LM head (evaluation's generation): the prompt in
    // one pass, then a token per pass.
    const [promptTokens, newTokens] = [32, 16];
    const decodeStarted = performance.now();
    await trainer.generate(
      Array.from({ length: promptTokens }, (_, i) => (i * 7919) % c.vocabSize),
      { maxNewTokens: newTokens, stop: [] },
    );
    const decodeMs = performance.now() - decodeStarted;
    trainer.dispose();
    tf.disposeVariables();
    const generation = {
      promptTokens,
      newTokens,
      msPerNewToken: Math.round(decodeMs / newTokens),
      note: 'the 32-token prompt pass included; no PyTorch decoding anchor: absolute only',
    };
    ours = { backend, tokensPerSecond: Number(((b * t) / (ms / 1000)).toFixed(1)), msPerStep: Math.round(ms), generation };
  } catch (e) {
    ours = { backend, failed: (e as Error).message.split('\n')[0] };
  }
  let torch: Record<string, unknown>;
  try {
    const env = { ...process.env };
    delete env.OPENBLAS_CORETYPE;
    delete env.OPENBLAS_L2_SIZE;
    const { stdout } = await promisify(execFile)(
      '/usr/bin/python3',
      [join(args.anchors!, 'torch_cpu_llama_step.py'), String(cpus().length), String(LLAMA_BLOCKS), String(b), String(t)],
      { env, timeout: 900_000 },
    );
    torch = JSON.parse(stdout.trim().split('\n').at(-1)!);
  } catch (e) {
    const why = String((e as { stderr?: string }).stderr || (e as Error).message);
    torch = {
      skipped: /No module named 'torch'|ENOENT/.test(why)
        ? 'needs Debian python3-torch: apt-get install -y python3-torch libopenblas0-pthread'
        : why.trim().split('\n').at(-1),
    };
  }
  const torchTps = Number((torch as { tokens_per_s?: number }).tokens_per_s ?? (torch as { fp32?: { tokens_per_s?: number } }).fp32?.tokens_per_s);
  return {
    shape: {
      width: 'Llama-3.2-1B (d 2048, 32/8 heads, SwiGLU 8192, vocab 128256, tied head)',
      serverBlocks: LLAMA_BLOCKS,
      lora: 'r=16, alpha 32 on q_proj, v_proj',
      loss: 'every token',
      batch: b,
      seq: t,
    },
    blocksNote: `${LLAMA_BLOCKS} of Llama-3.2-1B's 16 blocks and its LM head. On WASM the head alone (1 GB in fp32, held as [V, d] and [d, V], each packed again by XNNPACK) nears WebAssembly's 4 GB: no number of blocks fits beside it`,
    ours,
    torchCpu: torch,
    ratioToTorch:
      Number.isFinite(torchTps) && 'tokensPerSecond' in ours ? Number(((ours.tokensPerSecond as number) / torchTps).toFixed(3)) : 'no reference run',
  };
}
