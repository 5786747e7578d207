/**
 * Llama in TensorFlow.js for the training server: the full model, or blocks [k, n) applied to hidden states that
 * devices computed at cut k, with LoRA adapters on its frozen linears; the final norm and the LM head over the full
 * vocabulary (in chunks, ops.chunkedLmLoss); and generation with a KV cache. Same padding conventions as the float64
 * reference (core/model/masking.ts), which tests pin it to.
 *
 * Training goes through lossAndGradients, which keeps only each block's input and recomputes the block under
 * autodiff in the backward pass (gradient checkpointing): memory is one block's tape, not the model's, for about a
 * third more compute.
 */
import * as tf from '@tensorflow/tfjs';
import type { LlamaConfig } from '../../../core/model/llama/config.ts';
import { ropeInvFreq } from '../../../core/model/llama/reference.ts';
import { LLAMA_LINEARS, llamaLinearShape, LM_HEAD, type LlamaLinear, type LlamaModel } from '../../../core/model/llama/weights.ts';
import { requireParam } from '../../../core/model/params.ts';
import { decode, type DecodeOptions, type DecodeStep } from '../decode.ts';
import { repeatKv, rotaryTables, rotate, type Rotary } from './rotary.ts';
import {
  attentionMask,
  chunkedLmLoss,
  dropout,
  FrozenLinear,
  labelledRows,
  lastTokens,
  lowRank,
  positionIds,
  type Adapters,
  type AttentionMask,
  type BlockAdapters,
} from './ops.ts';

interface Block {
  inputNorm: tf.Tensor1D;
  postNorm: tf.Tensor1D;
  linears: Record<LlamaLinear, FrozenLinear>;
}

export interface GenerateOptions extends DecodeOptions {
  adapters?: Adapters;
}

export class TfLlama {
  readonly config: LlamaConfig;
  private readonly model: LlamaModel;
  private readonly blocks: Array<Block | undefined> = [];
  private readonly norm: tf.Tensor1D;
  private readonly invFreq: tf.Tensor2D;
  /** Uploaded on first use: a suffix trained from a cut needs the table only for the (tied) LM head. */
  private table: tf.Tensor2D | undefined;
  private head: { w: tf.Tensor2D; wT: tf.Tensor2D } | undefined;

  /** Uploads blocks [firstBlock, n) and the head; blocks below firstBlock run on the devices. */
  constructor(model: LlamaModel, { firstBlock = 0 }: { firstBlock?: number } = {}) {
    this.model = model;
    const c = (this.config = model.config);
    const vector = (name: string) => tf.tensor1d(requireParam(model.params, name));
    for (let i = 0; i < c.nLayer; i++) {
      if (i < firstBlock) {
        this.blocks.push(undefined);
        continue;
      }
      const linears = {} as Record<LlamaLinear, FrozenLinear>;
      for (const name of LLAMA_LINEARS) {
        // nn.Linear keeps [out, in]; the frozen linear wants W [in, out] and uses the original as its W^T.
        const w = tf.tensor2d(requireParam(model.params, `layers.${i}.${name}.weight`), llamaLinearShape(c, name));
        linears[name] = new FrozenLinear(w.transpose(), undefined, w);
      }
      this.blocks.push({ inputNorm: vector(`layers.${i}.input_layernorm.weight`), postNorm: vector(`layers.${i}.post_attention_layernorm.weight`), linears });
    }
    this.norm = vector('norm.weight');
    this.invFreq = tf.tensor2d(Float32Array.from(ropeInvFreq(c)), [1, c.headDim / 2]);
  }

  private embeddingTable(): tf.Tensor2D {
    // Kept: the first use may be inside a tf.tidy.
    return (this.table ??= tf.keep(tf.tensor2d(requireParam(this.model.params, 'embed_tokens.weight'), [this.config.vocabSize, this.config.nEmbd])));
  }

  /** The LM head as [V, d] and [d, V] (the token table when tied). */
  private lmHead(): { w: tf.Tensor2D; wT: tf.Tensor2D } {
    if (!this.head) {
      const c = this.config;
      const w = c.tieWordEmbeddings ? this.embeddingTable() : tf.keep(tf.tensor2d(requireParam(this.model.params, LM_HEAD), [c.vocabSize, c.nEmbd]));
      this.head = { w, wT: tf.keep(w.transpose()) };
    }
    return this.head;
  }

  /** Token ids [B, T] -> [B, T, d]. */
  embed(ids: tf.Tensor2D): tf.Tensor3D {
    return tf.tidy(() => tf.gather<tf.Tensor2D>(this.embeddingTable(), ids)) as unknown as tf.Tensor3D;
  }

  private rmsNorm(x: tf.Tensor2D, weight: tf.Tensor1D): tf.Tensor2D {
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), this.config.rmsNormEps))), weight);
  }

  /**
   * Block i on x [B*n, d] (n positions per row). `past` holds the keys and values of earlier positions (a KV
   * cache); the block returns its output and the keys and values including the new positions.
   */
  private block(
    i: number,
    x: tf.Tensor2D,
    B: number,
    n: number,
    attn: AttentionMask,
    rotary: Rotary,
    adapters: BlockAdapters,
    past?: { k: tf.Tensor4D; v: tf.Tensor4D },
  ) {
    const block = this.blocks[i];
    if (!block) throw new Error(`block ${i} is below this model's first block; it runs on the device`);
    const { nHead: H, nKvHead: KV, headDim: hd } = this.config;
    const linear = (name: LlamaLinear, input: tf.Tensor2D) => {
      const y = block.linears[name].apply(input);
      const ad = adapters[name];
      return ad ? (tf.add(y, tf.mul(lowRank(dropout(input, ad.keep), ad.a, ad.b), ad.scale)) as tf.Tensor2D) : y;
    };
    // [B*n, heads * hd] -> [B, heads, n, hd]
    const heads = (t: tf.Tensor2D, count: number, rotated: boolean) => {
      const rows = t.reshape([B * n, count, hd]) as tf.Tensor3D;
      return (rotated ? rotate(rows, rotary) : rows).reshape([B, n, count, hd]).transpose([0, 2, 1, 3]) as tf.Tensor4D;
    };
    const h = this.rmsNorm(x, block.inputNorm);
    const q = heads(linear('self_attn.q_proj', h), H, true);
    let k = heads(linear('self_attn.k_proj', h), KV, true);
    let v = heads(linear('self_attn.v_proj', h), KV, false);
    if (past) [k, v] = [tf.concat([past.k, k], 2), tf.concat([past.v, v], 2)];
    const p = tf.softmax(tf.add(tf.mul(tf.matMul(q, repeatKv(k, this.config.nHead), false, true), attn.scale), attn.fill));
    const o = tf
      .matMul(p, repeatKv(v, this.config.nHead))
      .transpose([0, 2, 1, 3])
      .reshape([B * n, H * hd]) as tf.Tensor2D;
    const x2 = tf.add(x, linear('self_attn.o_proj', o)) as tf.Tensor2D;
    const h2 = this.rmsNorm(x2, block.postNorm);
    const gate = linear('mlp.gate_proj', h2);
    const y = tf.add(x2, linear('mlp.down_proj', tf.mul(tf.mul(gate, tf.sigmoid(gate)), linear('mlp.up_proj', h2)))) as tf.Tensor2D;
    return { y, k, v };
  }

  /** Blocks [from, to) on hidden states [B, T, d], adapters applied if given (inference). Use inside tf.tidy. */
  blocksForward(hidden: tf.Tensor3D, mask: tf.Tensor2D, from: number, to = this.config.nLayer, adapters?: Adapters): tf.Tensor3D {
    const [B, T, d] = hidden.shape;
    const attn = attentionMask(mask, this.config.nHead, this.config.headDim);
    const rotary = rotaryTables(this.invFreq, positionIds(mask));
    let x = hidden.reshape([B * T, d]) as tf.Tensor2D;
    for (let i = from; i < to; i++) x = this.block(i, x, B, T, attn, rotary, adapters?.(i, B * T) ?? {}).y;
    tf.dispose([attn.scale, attn.fill, rotary.cos, rotary.sin]);
    return x.reshape([B, T, d]);
  }

  /**
   * Loss and gradients of `variables` (the adapters' A and B, and any head the loss uses) for training adapters on
   * blocks [from, n); `loss` maps the final hidden states [B, T, d] to a scalar. The forward keeps only each block's
   * input; the backward goes block by block from the top, recomputing each block under autodiff with the gradient
   * from above (gradient checkpointing, as explicit top-level gradient calls: TF.js cannot nest them inside a custom
   * gradient). The hidden states get no gradient (nothing goes back to devices). The caller disposes the results.
   */
  lossAndGradients(
    hidden: tf.Tensor3D,
    mask: tf.Tensor2D,
    from: number,
    adapters: Adapters,
    variables: tf.Variable[],
    loss: (final: tf.Tensor3D) => tf.Scalar,
  ): { loss: tf.Scalar; grads: Record<string, tf.Tensor> } {
    const [B, T, d] = hidden.shape;
    const attn = attentionMask(mask, this.config.nHead, this.config.headDim);
    const rotary = rotaryTables(this.invFreq, positionIds(mask));
    const n = this.config.nLayer;
    const perBlock = Array.from({ length: n - from }, (_, j) => {
      const ads = adapters(from + j, B * T);
      const adapted = LLAMA_LINEARS.filter((name) => ads[name]);
      return { ads, adapted, params: adapted.flatMap((name) => [ads[name]!.a, ads[name]!.b]) as tf.Variable[] };
    });
    // Block from + j as a function of its input and its adapters' A and B.
    const run = (j: number, input: tf.Tensor, ab: tf.Tensor[]) => {
      const { ads, adapted } = perBlock[j]!;
      const local: BlockAdapters = {};
      adapted.forEach((name, k) => (local[name] = { ...ads[name]!, a: ab[2 * k] as tf.Tensor2D, b: ab[2 * k + 1] as tf.Tensor2D }));
      return this.block(from + j, input as tf.Tensor2D, B, T, attn, rotary, local).y;
    };
    const inputs: tf.Tensor2D[] = [hidden.reshape([B * T, d])];
    for (let j = 0; j < n - from - 1; j++) inputs.push(tf.tidy(() => run(j, inputs[j]!, perBlock[j]!.params)));
    const top = n - from - 1;
    // The top block and the loss under variableGrads, so that the loss may use variables of its own (a head); the
    // block's input becomes a variable for its gradient.
    const x = tf.variable(inputs[top]!, true);
    const topVariables = [x, ...perBlock[top]!.params, ...variables.filter((v) => !perBlock.some((b) => b.params.includes(v)))];
    const { value, grads } = tf.variableGrads(() => loss(run(top, x, perBlock[top]!.params).reshape([B, T, d])), topVariables);
    let dy = grads[x.name]!;
    delete grads[x.name];
    x.dispose();
    for (let j = top - 1; j >= 0; j--) {
      const { params } = perBlock[j]!;
      const g = tf.grads((input: tf.Tensor, ...ab: tf.Tensor[]) => run(j, input, ab))([inputs[j]!, ...params], dy);
      tf.dispose([dy, inputs[j + 1]!]);
      params.forEach((p, k) => (grads[p.name] = g[k + 1]!));
      dy = g[0]!;
    }
    const keeps = perBlock.flatMap(({ ads, adapted }) => adapted.flatMap((name) => ads[name]!.keep ?? []));
    tf.dispose([dy, inputs[0]!, attn.scale, attn.fill, rotary.cos, rotary.sin, ...keeps]);
    return { loss: value, grads };
  }

  /** Hidden states after blocks [0, upTo): what the device prefix with cut `upTo` computes. */
  hidden(ids: tf.Tensor2D, mask: tf.Tensor2D, upTo = this.config.nLayer): tf.Tensor3D {
    return tf.tidy(() => this.blocksForward(this.embed(ids), mask, 0, upTo));
  }

  /** Next-token logits [rows, V] of final hidden states [rows, d]. */
  logits(hidden: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => tf.matMul(this.rmsNorm(hidden, this.norm), this.lmHead().wT));
  }

  /**
   * Mean next-token cross-entropy of final hidden states [B, T, d] against `labels` [B*T] (the token each position
   * should predict, IGNORE_INDEX where no loss is taken: prompts, padding). Only labelled rows reach the head.
   */
  lmLoss(final: tf.Tensor3D, labels: Int32Array): tf.Scalar {
    const { rows, targets } = labelledRows(final, labels);
    const { w, wT } = this.lmHead();
    return chunkedLmLoss(this.rmsNorm(rows, this.norm), wT, w, targets);
  }

  /** Final hidden states -> each row's last real token after the final norm [B, d] (a classification head's input). */
  pool(hidden: tf.Tensor3D, mask: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => this.rmsNorm(lastTokens(hidden, mask), this.norm));
  }

  /** Continues `prompt` (token ids, starting with BOS if the model expects one); returns only the new tokens. */
  async generate(prompt: readonly number[], { adapters, stop = this.config.eosTokenIds, ...options }: GenerateOptions): Promise<number[]> {
    let past: Array<{ k: tf.Tensor4D; v: tf.Tensor4D }> | undefined;
    const drop = () => {
      if (past) tf.dispose(past.flatMap((p) => [p.k, p.v]));
      past = undefined;
    };
    const step: DecodeStep = async (tokens, cached, keep) => {
      if (cached === 0) drop();
      const fresh = tokens.slice(cached);
      const n = fresh.length;
      const logits = tf.tidy(() => {
        let x = this.embed(tf.tensor2d(fresh, [1, n], 'int32')).reshape([n, this.config.nEmbd]) as tf.Tensor2D;
        const attn = attentionMask(tf.ones([1, cached + n], 'int32') as tf.Tensor2D, this.config.nHead, this.config.headDim, n);
        const rotary = rotaryTables(this.invFreq, tf.range(cached, cached + n, 1, 'int32').reshape([1, n]) as tf.Tensor2D);
        const next: Array<{ k: tf.Tensor4D; v: tf.Tensor4D }> = [];
        for (let i = 0; i < this.config.nLayer; i++) {
          const out = this.block(i, x, 1, n, attn, rotary, adapters?.(i, n) ?? {}, past?.[i]);
          x = out.y;
          if (keep) next.push({ k: tf.keep(out.k), v: tf.keep(out.v) });
        }
        drop();
        if (keep) past = next;
        return this.logits(x.slice([n - 1, 0], [1, -1]) as tf.Tensor2D);
      });
      const out = logits.dataSync() as Float32Array;
      logits.dispose();
      return out;
    };
    try {
      return await decode(prompt, { ...options, stop }, this.config.nPositions, step);
    } finally {
      drop();
    }
  }

  dispose(): void {
    tf.dispose([this.norm, this.invFreq]);
    if (this.head) tf.dispose(this.head.w === this.table ? [this.head.wT] : [this.head.w, this.head.wT]);
    if (this.table) this.table.dispose();
    for (const b of this.blocks) {
      if (!b) continue;
      tf.dispose([b.inputNorm, b.postNorm]);
      for (const l of Object.values(b.linears)) l.dispose();
    }
  }
}
