/**
 * bench:train's `llama` part: the server's causal-LM step at Llama-3.2-1B's width (d 2048, GQA 32/8, SwiGLU 8192,
 * tied LM head over 128,256 tokens), LoRA r=16 on q_proj and v_proj, loss on every token, batch 2 x 128, over two
 * server blocks (--llama-blocks 16: Llama-3.2-1B's whole server side), beside the PyTorch anchor of the same shape
 * (torch_cpu_llama_step.py); and greedy decoding with the KV cache through the same blocks and head beside
 * bench/torch_llama_decode.py. On the WASM backend the step does not fit: the tied LM head is 1 GB in fp32, held as
 * [V, d] and [d, V] and packed again by XNNPACK for each, past WebAssembly's 4 GB before the blocks; the result then
 * says so. Under ort-* the blocks and the head run on onnxruntime in native memory, and TF.js holds neither.
 */
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { llamaConfig } from '../core/model/llama/config.ts';
import { initLlama } from '../core/model/llama/init.ts';
import { Random } from '../core/random.ts';
import { initBackend, type BackendName } from '../gpu-server/backends/tfjs/runtime.ts';
import { Trainer, type TrainBatch } from '../gpu-server/train/trainer.ts';
import { runAnchor } from './anchor.ts';
import { flopsPerToken } from '../core/flops/flops.ts';
import { DT, GraphBuilder } from '../core/onnx/graph.ts';
import * as ort from 'onnxruntime-node';

const [ROWS, SEQ] = [2, 128];
const [PROMPT_TOKENS, NEW_TOKENS] = [32, 16];
const DECODE_ANCHOR = fileURLToPath(new URL('torch_llama_decode.py', import.meta.url));
/** PyTorch's own matrix product at the same shapes: its BLAS may outrun onnxruntime's Gemm on a host. */
const GEMM_ANCHOR = fileURLToPath(new URL('torch_gemm.py', import.meta.url));

interface Options {
  backend: BackendName;
  blocks: number;
  warmUp: number;
  steps: number;
  /** The folder of torch_cpu_llama_step.py. */
  anchors: string;
  log: (message: string) => void;
}

/** Our step and decoding, timed after `warmUp` steps, or why they failed. */
async function ours({ backend, blocks: nBlocks, warmUp, steps, log }: Options): Promise<Record<string, unknown>> {
  const c = llamaConfig({ nLayer: nBlocks });
  const { blocks } = await initBackend(backend);
  log(`llama: Llama-3.2-1B width, ${nBlocks} server blocks, batch ${ROWS} x ${SEQ}, on ${backend}: ${warmUp} warm-up steps, then ${steps}`);
  const r = new Random(2);
  try {
    // On onnxruntime the blocks' weights live there only (a Trainer's TF.js model then holds the heads alone).
    const trainer = new Trainer(
      initLlama(c, { seed: 2 }),
      {
        lora: { rank: 16, alpha: 32, dropout: 0, targets: ['self_attn.q_proj', 'self_attn.v_proj'] },
        optimizer: {},
        schedule: { lr: 2e-4, warmupSteps: 0, kind: 'constant' },
        seed: 0,
      },
      0,
      { task: 'causal-lm', blocks },
    );
    const batch: TrainBatch = {
      cut: 0,
      rows: ROWS,
      seqLen: SEQ,
      hidden: Float32Array.from({ length: ROWS * SEQ * c.nEmbd }, () => r.normal()),
      mask: new Int32Array(ROWS * SEQ).fill(1),
      labels: Int32Array.from({ length: ROWS * SEQ }, (_, i) => (i * 7919) % c.vocabSize),
    };
    for (let i = 0; i < warmUp; i++) await trainer.step(batch).result();
    const started = performance.now();
    for (let i = 0; i < steps; i++) await trainer.step(batch).result();
    const ms = (performance.now() - started) / steps;
    // Evaluation's generation: the prompt in one pass, then a token per pass; once to warm up, once timed.
    const prompt = Array.from({ length: PROMPT_TOKENS }, (_, i) => (i * 7919) % c.vocabSize);
    await trainer.generate(prompt, { maxNewTokens: NEW_TOKENS, stop: [] });
    const decodeStarted = performance.now();
    await trainer.generate(prompt, { maxNewTokens: NEW_TOKENS, stop: [] });
    const msPerNewToken = Number(((performance.now() - decodeStarted) / NEW_TOKENS).toFixed(1));
    trainer.dispose();
    tf.disposeVariables();
    return { backend, tokensPerSecond: Number(((ROWS * SEQ) / (ms / 1000)).toFixed(1)), msPerStep: Math.round(ms), msPerNewToken };
  } catch (e) {
    return { backend, failed: (e as Error).message.split('\n')[0] };
  }
}

/**
 * The best rate of one onnxruntime Gemm on this machine, at the step's two largest shapes: the MLP's ([M, d] by
 * [8192, d] transposed) and the LM head's ([M, d] by [V, d] transposed). Every method here does the same matrix
 * products, so this rate over PyTorch's step rate bounds the ratio a step on onnxruntime's Gemm could reach.
 */
async function gemmGflops(c: ReturnType<typeof llamaConfig>, threads: number): Promise<number> {
  const M = ROWS * SEQ;
  let best = 0;
  for (const n of [c.nInner, c.vocabSize]) {
    const g = new GraphBuilder();
    const y = g.op('Gemm', ['x', 'w'], { transB: 1 });
    const graph = g.build({
      name: 'gemm',
      opset: 18,
      metadata: {},
      inputs: [
        { name: 'x', type: DT.FLOAT, dims: [M, c.nEmbd] },
        { name: 'w', type: DT.FLOAT, dims: [n, c.nEmbd] },
      ],
      outputs: [{ name: 'y', from: y, type: DT.FLOAT, dims: [M, n] }],
    });
    const session = await ort.InferenceSession.create(graph, { intraOpNumThreads: threads, extra: { session: { intra_op: { allow_spinning: '0' } } } });
    const r = new Random(3);
    const feeds = {
      x: new ort.Tensor(
        'float32',
        Float32Array.from({ length: M * c.nEmbd }, () => r.normal()),
        [M, c.nEmbd],
      ),
      w: new ort.Tensor(
        'float32',
        Float32Array.from({ length: n * c.nEmbd }, () => r.normal()),
        [n, c.nEmbd],
      ),
    };
    for (let i = 0; i < 4; i++) {
      const started = performance.now();
      await session.run(feeds);
      best = Math.max(best, (2 * M * c.nEmbd * n) / ((performance.now() - started) / 1000) / 1e9);
    }
    await session.release();
  }
  return Number(best.toFixed(1));
}

export async function llamaStep(options: Options): Promise<Record<string, unknown>> {
  const mine = await ours(options);
  const threads = cpus().length;
  options.log(`llama: PyTorch anchors, ${threads} threads`);
  const step = await runAnchor(join(options.anchors, 'torch_cpu_llama_step.py'), [threads, options.blocks, ROWS, SEQ]);
  const decoding = await runAnchor(DECODE_ANCHOR, [options.anchors, threads, options.blocks, PROMPT_TOKENS, NEW_TOKENS]);
  const torchTps = Number((step as { fp32?: { tokens_per_s?: number } }).fp32?.tokens_per_s);
  const torchMsPerToken = Number((decoding as { ms_per_new_token?: number }).ms_per_new_token);
  const ratio = (x: number) => (Number.isFinite(x) ? Number(x.toFixed(3)) : 'no reference run');
  // The step's matrix products (core/flops): the blocks' forward and backward and the LM head's, per token.
  const c = llamaConfig({ nLayer: options.blocks });
  const flops = flopsPerToken({
    config: c,
    seqLen: SEQ,
    cut: 0,
    lora: { rank: 16, targets: ['self_attn.q_proj', 'self_attn.v_proj'] },
    head: 'lm',
    headTrainable: false,
  });
  const gflopPerStep = ((flops.total.forward + flops.total.backward) * ROWS * SEQ) / 1e9;
  const effective = (tokensPerSecond: number) => Number(((gflopPerStep * tokensPerSecond) / (ROWS * SEQ)).toFixed(1));
  const gemm = await gemmGflops(c, threads);
  const torchGemm = await runAnchor(GEMM_ANCHOR, [threads, ROWS * SEQ, c.nEmbd, c.nInner, c.vocabSize]);
  const torchGemmGflops = Number((torchGemm as { gflops?: number }).gflops);
  return {
    shape: {
      width: 'Llama-3.2-1B (d 2048, 32/8 heads, SwiGLU 8192, vocab 128256, tied head)',
      serverBlocks: options.blocks,
      lora: 'r=16, alpha 32 on q_proj, v_proj',
      loss: 'every token',
      batch: ROWS,
      seq: SEQ,
      decoding: `greedy with the KV cache, a ${PROMPT_TOKENS}-token prompt (its pass included) and ${NEW_TOKENS} new tokens`,
    },
    ours: mine,
    torchCpu: { step, decoding },
    matrixProducts: {
      gflopPerStep: Number(gflopPerStep.toFixed(1)),
      effectiveGflops: { ours: effective(Number(mine.tokensPerSecond)), torch: effective(torchTps) },
      gemmGflops: { onnxruntime: gemm, torch: Number.isFinite(torchGemmGflops) ? torchGemmGflops : torchGemm },
      note: "effective: the step's matrix-product FLOPs over its time; gemmGflops: the best rate of one matrix product at the step's two largest shapes in this run, onnxruntime's Gemm (ours) and PyTorch's (its BLAS). Every implementation does the same products, so each rate over torch's effective rate bounds the tokens/s ratio a step on that library's product could reach here (ratioBound: ours)",
      ratioBound: ratio(gemm / effective(torchTps)),
    },
    ratioToTorch: {
      tokensPerSecond: ratio(Number(mine.tokensPerSecond) / torchTps),
      // Above 1: we decode faster (PyTorch's ms per token over ours).
      decodingSpeed: ratio(torchMsPerToken / Number(mine.msPerNewToken)),
    },
  };
}
