/**
 * npm run bench:train — the server's training step (blocks from the cut with LoRA, head, AdamW) in tokens/s on every
 * TensorFlow.js backend that initialises here, side by side. JSON on stdout, progress on stderr.
 */
import { cpus } from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { gpt2Config } from '../core/model/config.ts';
import { initModel } from '../core/model/init.ts';
import { Random } from '../core/random.ts';
import { BACKENDS, initBackend } from '../gpu-server/tf/backend.ts';
import { Trainer, type TrainBatch } from '../gpu-server/train/trainer.ts';

const log = (m: string) => process.stderr.write(`[bench:train] ${m}\n`);
const B = 8;
const T = 64;
const CUT = 2;
const STEPS = 4;
const config = gpt2Config({ nLayer: 6, nEmbd: 256, nHead: 8, nPositions: T });
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

const results: Record<string, { tokensPerSecond: number; msPerStep: number } | { skipped: string }> = {};
for (const backend of BACKENDS) {
  try {
    await initBackend(backend);
  } catch (e) {
    results[backend] = { skipped: (e as Error).message.split(': ').slice(2).join(': ') || (e as Error).message };
    log(`${backend}: skipped`);
    continue;
  }
  log(`${backend}: ${STEPS} steps after a warm-up`);
  const trainer = new Trainer(model, { lora: { rank: 8, alpha: 16, dropout: 0, targets: ['attn.c_attn'] }, optimizer: {}, schedule: { lr: 1e-3, warmupSteps: 0, kind: 'constant' }, seed: 0 }, CUT);
  trainer.trainStep(batch);
  const started = performance.now();
  for (let i = 0; i < STEPS; i++) trainer.trainStep(batch);
  const ms = (performance.now() - started) / STEPS;
  trainer.dispose();
  results[backend] = { tokensPerSecond: Math.round((B * T) / (ms / 1000)), msPerStep: Math.round(ms) };
  tf.disposeVariables();
}
const wasm = results.wasm;
console.log(
  JSON.stringify(
    {
      bench: 'server training step',
      date: new Date().toISOString(),
      machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
      shape: { nLayer: config.nLayer, nEmbd: config.nEmbd, nHead: config.nHead, cut: CUT, lora: 'r=8 on c_attn of blocks 2..5', batch: B, seq: T },
      backends: results,
      ratioToWasm: Object.fromEntries(Object.entries(results).flatMap(([k, v]) => ('tokensPerSecond' in v && wasm && 'tokensPerSecond' in wasm ? [[k, Number((v.tokensPerSecond / wasm.tokensPerSecond).toFixed(3))]] : []))),
    },
    null,
    2,
  ),
);
