/**
 * A model's blocks on onnxruntime-node, through its family's graphs (families.ts; one session per graph: sessions.ts),
 * one session per graph for every block (weights are inputs, over the checkpoint's own buffers). Training: the
 * adapted blocks' forward and backward, the tapes kept between the two as onnxruntime tensors; TensorFlow.js keeps
 * the classification head, its loss and AdamW. Inference: any blocks forward (frozen ones below the deepest cut,
 * adapted ones above it), with a KV cache for generation, and the LM head's logits.
 */
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import type { Model } from '../../../core/model/family.ts';
import { lastTokenIndex, positionIds } from '../../../core/model/masking.ts';
import { decode, type DecodeOptions } from '../decode.ts';
import type { Gradients, LossHead } from '../backend.ts';
import type { Adapters, LinearAdapter } from '../tfjs/ops.ts';
import { blockFamily, type BlockFamily } from './families.ts';
import { OrtLmHead } from './lm-head.ts';
import { GraphSessions } from './sessions.ts';
import type { BlockArrays, KvCache, OpTime, OrtOptions, Tape } from './types.ts';

export type { BlockArrays, KvCache, OpTime, OrtOptions, Tape } from './types.ts';
import type { LoraGraphSpec } from '../../../core/onnx/lora-graph.ts';
import { gatherRows, scatterRows } from './rows.ts';

const f32 = (data: Float32Array, dims: number[]): ort.Tensor => new ort.Tensor('float32', data, dims);

export class OrtBlocks {
  private readonly graphs: GraphSessions;
  private readonly head: OrtLmHead;
  private readonly weights: Array<Record<string, ort.Tensor>> = [];
  private readonly arena = new Map<string, Float32Array>();

  private readonly family: BlockFamily;
  private readonly nLayer: number;

  constructor(
    model: Model,
    readonly from: number,
    private readonly spec: LoraGraphSpec,
    options: OrtOptions,
  ) {
    this.family = blockFamily(model, spec);
    this.nLayer = model.config.nLayer;
    this.graphs = new GraphSessions(this.family, options);
    this.head = new OrtLmHead(this.graphs, this.family, model.config.vocabSize, options.lmHeadLogitsBytes);
    // Views of the checkpoint's arrays: holding every block costs no memory.
    for (let i = 0; i < this.nLayer; i++) this.weights[i] = this.family.weights(i);
  }

  /** Whether the family's LM head runs here (Llama's; GPT-2's causal-LM loss stays on TensorFlow.js). */
  get hasLmHead(): boolean {
    return this.family.lmHead !== undefined;
  }

  /** `pooled`: the block runs pooled, and the linears after its attention see those rows only (their dropout's too). */
  private adapterTensors(i: number, arrays: BlockArrays, B: number, T: number, pooled?: Int32Array): Record<string, ort.Tensor> {
    const out: Record<string, ort.Tensor> = {};
    for (const [linear, { a, b, keep }] of Object.entries(arrays)) {
      const [inp, outDim] = this.family.linearInOut(linear);
      out[`${linear}.lora_A`] = f32(a, [inp, this.spec.rank]);
      out[`${linear}.lora_B`] = f32(b, [this.spec.rank, outDim]);
      if (keep)
        out[`${linear}.keep`] =
          pooled && this.family.pooled!.linears.includes(linear) ? f32(gatherRows(keep, pooled, inp), [pooled.length, inp]) : f32(keep, [B * T, inp]);
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

  /**
   * Blocks [from, n) on hidden states [B, T, d]: the final hidden states and the tape for backward. `pooled`: the
   * rows (b T + t) the loss reads, one a batch row; the last block then runs pooled (the family's pooled graphs),
   * and y is those rows' [B, d].
   */
  async forward(
    hidden: Float32Array,
    mask: Int32Array,
    [B, T]: [number, number],
    adapters: BlockArrays[],
    pooled?: Int32Array,
  ): Promise<{ y: Float32Array; tape: Tape }> {
    const d = this.family.nEmbd;
    const shared = this.family.shared(mask, B, T);
    const wholeShapes = this.family.savedShapes(B, T);
    let x = f32(hidden, [B, T, d]);
    const tape: Tape = { tensors: [], shape: [B, T], pooled };
    for (let i = this.from; i < this.nLayer; i++) {
      const pool = i === this.nLayer - 1 ? pooled : undefined;
      const session = await this.graphs.session(pool ? 'forward-pooled' : 'forward');
      const inputs = pool ? this.family.pooled!.shared(shared, B, T, pool) : shared;
      const shapes = pool ? this.family.savedShapes(B, T, true) : wholeShapes;
      const ads = this.adapterTensors(i, adapters[i]!, B, T, pool);
      const outputs: Record<string, ort.Tensor> = { y: this.buffer(`y.${i}`, pool ? [B, d] : [B, T, d]) };
      for (const name of this.family.saved) outputs[`saved.${name}`] = this.buffer(`saved.${i}.${name}`, shapes[name]!);
      await session.run(this.graphs.feeds(session, { x, ...inputs, ...this.weights[i], ...ads }), outputs);
      tape.tensors[i] = { ...inputs, ...ads, ...outputs };
      x = outputs.y!;
    }
    return { y: x.data as Float32Array, tape };
  }

  /**
   * Blocks [from, to) forward only, on x [B, T, d]: adapters (arrays without dropout) on the blocks that have them,
   * and the keys and values of P earlier positions when `past` is given (`mask` then covers all P + T positions).
   * Returns the output and, with `cache`, every block's keys and values including these positions (without it they
   * are not fetched: onnxruntime-node copies every output it returns).
   */
  async infer(
    x: Float32Array,
    mask: Int32Array,
    [B, T]: [number, number],
    { from, to = this.nLayer, adapters, past, cache: keep = false }: { from: number; to?: number; adapters?: BlockArrays[]; past?: KvCache; cache?: boolean },
  ): Promise<{ y: Float32Array; cache: KvCache }> {
    const K = mask.length / B;
    const shared = this.family.shared(mask, B, K, T);
    const empty = f32(new Float32Array(0), this.family.cacheShape(B, 0));
    let h = f32(x, [B, T, this.family.nEmbd]);
    const cache: KvCache = [];
    for (let i = from; i < to; i++) {
      const ads = adapters?.[i];
      const session = await this.graphs.session(ads ? 'infer-adapted' : 'infer-frozen');
      const feeds = this.graphs.feeds(session, {
        x: h,
        ...shared,
        ...this.weights[i],
        ...(ads ? this.adapterTensors(i, ads, B, T) : {}),
        past_k: past?.[i]?.k ?? empty,
        past_v: past?.[i]?.v ?? empty,
      });
      const out = await (keep ? session.run(feeds) : session.run(feeds, ['y']));
      h = out.y!;
      if (keep) cache[i] = { k: out.present_k!, v: out.present_v! };
    }
    return { y: h.data as Float32Array, cache };
  }

  /** The adapters' gradients [dA, dB] by block and linear, from the final hidden states' gradient (as forward's y). */
  async backward(dFinal: Float32Array, tape: Tape): Promise<Array<Record<string, [Float32Array, Float32Array]>>> {
    const d = this.family.nEmbd;
    const [B, T] = tape.shape;
    const grads: Array<Record<string, [Float32Array, Float32Array]>> = [];
    let dy = f32(dFinal, tape.pooled ? [B, d] : [B, T, d]);
    for (let i = this.nLayer - 1; i >= this.from; i--) {
      const pooled = tape.pooled && i === this.nLayer - 1 ? '-pooled' : '';
      const session = await this.graphs.session(`${i > this.from ? 'backward' : 'backward-lowest'}${pooled}`);
      const outputs: Record<string, ort.Tensor> = {};
      // A pooled block's dx comes as rows [B T, d]: the same memory as [B, T, d].
      if (i > this.from) outputs.dx = this.buffer(`dx.${i % 2}`, pooled ? [B * T, d] : [B, T, d]);
      for (const linear of this.spec.targets) {
        const [inp, out] = this.family.linearInOut(linear);
        outputs[`${linear}.lora_A.grad`] = this.buffer(`grad.${i}.${linear}.A`, [inp, this.spec.rank]);
        outputs[`${linear}.lora_B.grad`] = this.buffer(`grad.${i}.${linear}.B`, [this.spec.rank, out]);
      }
      await session.run(this.graphs.feeds(session, { dy, ...this.weights[i], ...tape.tensors[i] }), outputs);
      grads[i] = Object.fromEntries(
        this.spec.targets.map((linear) => [
          linear,
          [outputs[`${linear}.lora_A.grad`]!.data as Float32Array, outputs[`${linear}.lora_B.grad`]!.data as Float32Array],
        ]),
      );
      if (i > this.from) dy = f32(outputs.dx!.data as Float32Array, [B, T, d]);
    }
    return grads;
  }

  /**
   * What the TensorFlow.js models' lossAndGradients computes, with the blocks [from, n) here: the adapters' gradients
   * by variable name, and those of `variables` the loss itself uses (a classification head), from `loss` of the
   * final hidden states. The adapters are read from their variables once per step (a few hundred KB). With a
   * causal-LM's token `labels`, a family with an LM head graph (Llama) takes the loss there instead: the head over the
   * whole vocabulary stays in native memory, and TF.js never holds it. `lastTokens`: the loss reads nothing of the
   * final hidden states but each row's last token (a classification head), so the last block runs on those rows
   * alone where the family has pooled graphs (the rest of what `loss` sees is zeros: it reads none of it).
   */
  async lossAndGradients(
    hidden: Float32Array,
    maskArray: Int32Array,
    [B, T]: [number, number],
    adapters: Adapters,
    variables: tf.Variable[],
    { loss, labels, lastTokens = false }: LossHead,
  ): Promise<Gradients> {
    const d = this.family.nEmbd;
    const byName: Array<Record<string, { a: tf.Variable; b: tf.Variable }>> = [];
    const perBlock = this.adapterArrays(adapters, B * T, (i, linear, ad) => ((byName[i] ??= {})[linear] = { a: ad.a as tf.Variable, b: ad.b as tf.Variable }));
    const pooled = lastTokens && this.family.pooled ? lastTokenIndex(maskArray, B, T).map((t, b) => b * T + t) : undefined;
    const { y, tape } = await this.forward(hidden, maskArray, [B, T], perBlock, pooled);
    let value: tf.Scalar;
    let dFinal: Float32Array;
    let grads: Record<string, tf.Tensor> = {};
    if (labels && this.family.lmHead) ({ loss: value, dFinal } = await this.head.loss(y, labels, d));
    else {
      const final = tf.tidy(() => tf.variable(tf.tensor3d(pooled ? scatterRows(y, pooled, B * T, d) : y, [B, T, d])));
      ({ value, grads } = tf.variableGrads(
        () => loss(final),
        [final, ...variables.filter((v) => !byName.some((b) => b && Object.values(b).some((x) => x.a === v || x.b === v)))],
      ));
      const dAll = grads[final.name]!.dataSync() as Float32Array;
      dFinal = pooled ? gatherRows(dAll, pooled, d) : dAll;
      tf.dispose([final, grads[final.name]!]);
      delete grads[final.name];
    }
    const loraGrads = await this.backward(dFinal, tape);
    for (let i = this.from; i < this.nLayer; i++) {
      for (const [linear, { a, b }] of Object.entries(byName[i] ?? {})) {
        const [da, db] = loraGrads[i]![linear]!;
        grads[a.name] = tf.tensor2d(da, a.shape as [number, number]);
        grads[b.name] = tf.tensor2d(db, b.shape as [number, number]);
      }
    }
    return { loss: value, grads };
  }

  /**
   * The adapters of blocks [from, n) as arrays (read from their variables once), in block order as the TensorFlow.js
   * models ask for them, so that dropout multipliers come out the same; `each` sees every adapter.
   */
  adapterArrays(adapters: Adapters, rows: number, each?: (block: number, linear: string, adapter: LinearAdapter) => void): BlockArrays[] {
    const perBlock: BlockArrays[] = [];
    for (let i = this.from; i < this.nLayer; i++) {
      perBlock[i] = {};
      for (const [linear, ad] of Object.entries(adapters(i, rows))) {
        perBlock[i]![linear] = {
          a: ad!.a.dataSync() as Float32Array,
          b: ad!.b.dataSync() as Float32Array,
          keep: ad!.keep?.dataSync() as Float32Array | undefined,
        };
        each?.(i, linear, ad!);
        ad!.keep?.dispose();
      }
    }
    return perBlock;
  }

  /** Token ids [B, T] with their attention mask -> the first block's input (core/model/masking.ts's positions). */
  embed(ids: Int32Array, mask: Int32Array, B: number, T: number): Float32Array {
    return this.family.embed(ids, positionIds(mask, B, T));
  }

  /** Continues `prompt` through every block (adapters as arrays) with a KV cache: decode.ts's loop. */
  generate(prompt: readonly number[], options: DecodeOptions, adapters: BlockArrays[], maxPositions: number): Promise<number[]> {
    let past: KvCache | undefined;
    const d = this.family.nEmbd;
    return decode(prompt, options, maxPositions, async (tokens, cached, keep) => {
      const fresh = tokens.slice(cached);
      const n = fresh.length;
      const x = this.family.embed(
        fresh,
        Int32Array.from(fresh, (_, i) => cached + i),
      );
      const { y, cache } = await this.infer(x, new Int32Array(cached + n).fill(1), [1, n], { from: 0, adapters, past: cached ? past : undefined, cache: keep });
      past = keep ? cache : undefined;
      return this.head.logits(y.subarray((n - 1) * d));
    });
  }

  /** Next-token logits [M, V] of final hidden states [M, d] (the final norm and the LM head). */
  logits(rows: Float32Array): Promise<Float32Array> {
    return this.head.logits(rows);
  }

  /** The mean next-token loss of the labelled rows of final hidden states y [B*T, d]. */
  lmEvalLoss(y: Float32Array, labels: Int32Array): Promise<number> {
    return this.head.evalLoss(y, labels);
  }

  /** Kernel time a step by graph and operator (sessions.ts), for a blocks made with { profile: true }. */
  profile(over?: { steps?: number; warmUp?: number }): Promise<OpTime[]> {
    return this.graphs.profile(over);
  }

  release(): Promise<void> {
    return this.graphs.release();
  }
}
