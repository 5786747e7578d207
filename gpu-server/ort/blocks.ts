/**
 * A model's server blocks on onnxruntime-node: the training step's forward and backward through its family's block
 * graphs (families.ts: gpt2-graphs.ts, llama-graphs.ts), one session each for every block (weights are inputs, uploaded once as tensors), the tapes kept
 * between the two as onnxruntime tensors. TensorFlow.js keeps the head, the loss and AdamW; this takes the hidden
 * states at the deepest cut and gives back the final hidden states, then, from their gradient, the adapters'.
 */
import * as tf from '@tensorflow/tfjs';
import { readdir, readFile, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { Model } from '../../core/model/family.ts';
import { labelledPositions, type Adapters } from '../model/ops.ts';
import { blockFamily, type BlockFamily } from './families.ts';
import type { LoraGraphSpec } from './lora-graph.ts';

export interface OrtOptions {
  /** 'cpu' or 'webgpu' (onnxruntime-node's bundled provider). */
  provider: 'cpu' | 'webgpu';
  /** Threads of onnxruntime's CPU kernels (default: every core; onnxruntime's own default takes physical cores only). */
  threads?: number;
  /** Record every node's time (onnxruntime's profiler) for profile(). */
  profile?: boolean;
}

/** Time by operator over the steps run, from onnxruntime's profiler. */
export interface OpTime {
  graph: string;
  op: string;
  ms: number;
  share: number;
}

/** One adapted linear's weights and dropout multiplier for a step, as flat arrays. */
interface AdapterArrays {
  a: Float32Array;
  b: Float32Array;
  keep?: Float32Array;
}

export type BlockArrays = Record<string, AdapterArrays>;

export interface Tape {
  tensors: Array<Record<string, ort.Tensor>>;
  shape: [number, number];
}

const f32 = (data: Float32Array, dims: number[]): ort.Tensor => new ort.Tensor('float32', data, dims);

export class OrtBlocks {
  private readonly sessions = new Map<string, Promise<ort.InferenceSession>>();
  private readonly weights: Array<Record<string, ort.Tensor>> = [];
  private readonly arena = new Map<string, Float32Array>();

  private readonly family: BlockFamily;
  private readonly nLayer: number;

  constructor(
    model: Model,
    readonly from: number,
    private readonly spec: LoraGraphSpec,
    private readonly options: OrtOptions,
  ) {
    this.family = blockFamily(model, spec);
    this.nLayer = model.config.nLayer;
    for (let i = from; i < this.nLayer; i++) this.weights[i] = this.family.weights(i);
  }

  private session(kind: 'forward' | 'backward' | 'backward-lowest' | 'lm-head'): Promise<ort.InferenceSession> {
    let s = this.sessions.get(kind);
    if (!s) {
      const bytes = kind === 'forward' ? this.family.forwardGraph() : kind === 'lm-head' ? this.family.lmHead!.graph() : this.family.backwardGraph(kind === 'backward');
      s = ort.InferenceSession.create(bytes, {
        executionProviders: [this.options.provider],
        intraOpNumThreads: this.options.threads ?? availableParallelism(),
        graphOptimizationLevel: 'all',
        ...(this.options.profile ? { enableProfiling: true, profileFilePrefix: join(tmpdir(), `splitfrozen-ort-${process.pid}-${kind}`) } : {}),
      });
      this.sessions.set(kind, s);
    }
    return s;
  }

  private feeds(session: ort.InferenceSession, values: Record<string, ort.Tensor>): Record<string, ort.Tensor> {
    const out: Record<string, ort.Tensor> = {};
    for (const name of session.inputNames) {
      const v = values[name];
      if (!v) throw new Error(`onnxruntime block graph: no value for input '${name}'`);
      out[name] = v;
    }
    return out;
  }

  private adapterTensors(i: number, arrays: BlockArrays, B: number, T: number): Record<string, ort.Tensor> {
    const out: Record<string, ort.Tensor> = {};
    for (const [linear, { a, b, keep }] of Object.entries(arrays)) {
      const [inp, outDim] = this.family.linearInOut(linear);
      out[`${linear}.lora_A`] = f32(a, [inp, this.spec.rank]);
      out[`${linear}.lora_B`] = f32(b, [this.spec.rank, outDim]);
      if (keep) out[`${linear}.keep`] = f32(keep, [B * T, inp]);
    }
    return out;
  }

  /**
   * A tensor over a buffer kept for `key`, grown to the largest size asked so far: every step writes its outputs into
   * the same memory (onnxruntime fills pre-allocated outputs) instead of allocating tens of MB per block per step.
   */
  private buffer(key: string, dims: number[]): ort.Tensor {
    const n = dims.reduce((a, x) => a * x, 1);
    let buf = this.arena.get(key);
    if (!buf || buf.length < n) this.arena.set(key, (buf = new Float32Array(n)));
    return f32(buf.subarray(0, n), dims);
  }

  /** Blocks [from, n) on hidden states [B, T, d]: the final hidden states and the tape for backward. */
  async forward(hidden: Float32Array, mask: Int32Array, [B, T]: [number, number], adapters: BlockArrays[]): Promise<{ y: Float32Array; tape: Tape }> {
    const d = this.family.nEmbd;
    const session = await this.session('forward');
    const shared = this.family.shared(mask, B, T);
    const shapes = this.family.savedShapes(B, T);
    let x = f32(hidden, [B, T, d]);
    const tape: Tape = { tensors: [], shape: [B, T] };
    for (let i = this.from; i < this.nLayer; i++) {
      const ads = this.adapterTensors(i, adapters[i]!, B, T);
      const outputs: Record<string, ort.Tensor> = { y: this.buffer(`y.${i}`, [B, T, d]) };
      for (const name of this.family.saved) outputs[`saved.${name}`] = this.buffer(`saved.${i}.${name}`, shapes[name]!);
      await session.run(this.feeds(session, { x, ...shared, ...this.weights[i], ...ads }), outputs);
      tape.tensors[i] = { ...shared, ...ads, ...outputs };
      x = outputs.y!;
    }
    return { y: x.data as Float32Array, tape };
  }

  /** The adapters' gradients [dA, dB] by block and linear, from the final hidden states' gradient. */
  async backward(dFinal: Float32Array, tape: Tape): Promise<Array<Record<string, [Float32Array, Float32Array]>>> {
    const d = this.family.nEmbd;
    const [B, T] = tape.shape;
    const grads: Array<Record<string, [Float32Array, Float32Array]>> = [];
    let dy = f32(dFinal, [B, T, d]);
    for (let i = this.nLayer - 1; i >= this.from; i--) {
      const session = await this.session(i > this.from ? 'backward' : 'backward-lowest');
      const outputs: Record<string, ort.Tensor> = {};
      if (i > this.from) outputs.dx = this.buffer(`dx.${i % 2}`, [B, T, d]);
      for (const linear of this.spec.targets) {
        const [inp, out] = this.family.linearInOut(linear);
        outputs[`${linear}.lora_A.grad`] = this.buffer(`grad.${i}.${linear}.A`, [inp, this.spec.rank]);
        outputs[`${linear}.lora_B.grad`] = this.buffer(`grad.${i}.${linear}.B`, [this.spec.rank, out]);
      }
      await session.run(this.feeds(session, { dy, ...this.weights[i], ...tape.tensors[i] }), outputs);
      grads[i] = Object.fromEntries(this.spec.targets.map((linear) => [linear, [outputs[`${linear}.lora_A.grad`]!.data as Float32Array, outputs[`${linear}.lora_B.grad`]!.data as Float32Array]]));
      if (i > this.from) dy = outputs.dx!;
    }
    return grads;
  }

  /**
   * What the TensorFlow.js models' lossAndGradients computes, with the blocks [from, n) here: the adapters' gradients
   * by variable name, and those of `variables` the loss itself uses (a classification head), from `loss` of the
   * final hidden states. The adapters are read from their variables once per step (a few hundred KB). With a
   * causal-LM's token `labels`, a family with an LM head graph (Llama) takes the loss there instead: the head over the
   * whole vocabulary stays in native memory, and TF.js never holds it.
   */
  async lossAndGradients(hidden: tf.Tensor3D, mask: tf.Tensor2D, adapters: Adapters, variables: tf.Variable[], loss: (final: tf.Tensor3D) => tf.Scalar, labels?: Int32Array): Promise<{ loss: tf.Scalar; grads: Record<string, tf.Tensor> }> {
    const [B, T, d] = hidden.shape;
    const perBlock: BlockArrays[] = [];
    const byName: Array<Record<string, { a: tf.Variable; b: tf.Variable }>> = [];
    // In block order, as the TensorFlow.js models ask for them: the dropout multipliers come out the same.
    for (let i = this.from; i < this.nLayer; i++) {
      perBlock[i] = {};
      byName[i] = {};
      for (const [linear, ad] of Object.entries(adapters(i, B * T))) {
        perBlock[i]![linear] = { a: ad!.a.dataSync() as Float32Array, b: ad!.b.dataSync() as Float32Array, keep: ad!.keep?.dataSync() as Float32Array | undefined };
        byName[i]![linear] = { a: ad!.a as tf.Variable, b: ad!.b as tf.Variable };
        ad!.keep?.dispose();
      }
    }
    const { y, tape } = await this.forward(hidden.dataSync() as Float32Array, mask.dataSync() as Int32Array, [B, T], perBlock);
    let value: tf.Scalar;
    let dFinal: Float32Array;
    let grads: Record<string, tf.Tensor> = {};
    if (labels && this.family.lmHead) ({ loss: value, dFinal } = await this.lmLoss(y, labels, d));
    else {
      const final = tf.tidy(() => tf.variable(tf.tensor3d(y, [B, T, d])));
      ({ value, grads } = tf.variableGrads(() => loss(final), [final, ...variables.filter((v) => !byName.some((b) => b && Object.values(b).some((x) => x.a === v || x.b === v)))]));
      dFinal = grads[final.name]!.dataSync() as Float32Array;
      tf.dispose([final, grads[final.name]!]);
      delete grads[final.name];
    }
    const loraGrads = await this.backward(dFinal, tape);
    for (let i = this.from; i < this.nLayer; i++) {
      for (const [linear, { a, b }] of Object.entries(byName[i]!)) {
        const [da, db] = loraGrads[i]![linear]!;
        grads[a.name] = tf.tensor2d(da, a.shape as [number, number]);
        grads[b.name] = tf.tensor2d(db, b.shape as [number, number]);
      }
    }
    return { loss: value, grads };
  }

  /** Ends profiling: kernel time by graph and operator, largest first (the profiler's files are removed). */
  async profile(): Promise<OpTime[]> {
    if (!this.options.profile) throw new Error('profile() needs OrtBlocks created with { profile: true }');
    const byOp = new Map<string, number>();
    for (const [graph, s] of this.sessions) {
      (await s).endProfiling();
      const dir = tmpdir();
      for (const file of (await readdir(dir)).filter((f) => f.startsWith(`splitfrozen-ort-${process.pid}-${graph}_`))) {
        const events = JSON.parse(await readFile(join(dir, file), 'utf8')) as Array<{ cat?: string; name: string; dur: number; args?: { op_name?: string } }>;
        for (const e of events) if (e.cat === 'Node' && e.name.endsWith('_kernel_time')) byOp.set(`${graph}\t${e.args?.op_name}`, (byOp.get(`${graph}\t${e.args?.op_name}`) ?? 0) + e.dur / 1000);
        await rm(join(dir, file));
      }
    }
    const total = [...byOp.values()].reduce((a, b) => a + b, 0);
    return [...byOp]
      .map(([key, ms]) => ({ graph: key.split('\t')[0]!, op: key.split('\t')[1]!, ms: Math.round(ms), share: Number((ms / total).toFixed(3)) }))
      .sort((a, b) => b.ms - a.ms);
  }

  /** The mean next-token loss of the labelled rows of y [B*T, d] and y's gradient, on the LM head graph. */
  private async lmLoss(y: Float32Array, labels: Int32Array, d: number): Promise<{ loss: tf.Scalar; dFinal: Float32Array }> {
    const picked = labelledPositions(labels);
    const rows = new Float32Array(picked.length * d);
    picked.forEach((r, i) => rows.set(y.subarray(r * d, (r + 1) * d), i * d));
    const targets = new ort.Tensor('int64', BigInt64Array.from(picked, (r) => BigInt(labels[r]!)), [picked.length]);
    const session = await this.session('lm-head');
    const out = await session.run(this.feeds(session, { rows: f32(rows, [picked.length, d]), targets, ...this.family.lmHead!.weights }));
    const dRows = out.drows!.data as Float32Array;
    const dFinal = new Float32Array(y.length);
    picked.forEach((r, i) => dFinal.set(dRows.subarray(i * d, (i + 1) * d), r * d));
    return { loss: tf.scalar((out.loss!.data as Float32Array)[0]!), dFinal };
  }

  async release(): Promise<void> {
    for (const s of this.sessions.values()) await (await s).release();
    this.sessions.clear();
  }
}
