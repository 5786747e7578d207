/**
 * A GPT-2 block's training step as two ONNX graphs for onnxruntime: `forward` returns the block's output and what its
 * backward needs; `backward` takes the upstream gradient, those saved tensors and the LoRA weights and returns the
 * LoRA gradients and (unless it is the lowest block) the input gradient. The math is the hand-written backward of
 * gpu-server/backends/tfjs/gpt2-block.ts written as graph ops; the block's weights and adapters are graph inputs, so one
 * session serves every block and a step never rebuilds one. Tokens are rows ([B*T, n]) so that every linear is one
 * Gemm with its bias, and LoRA's low-rank term adds into it (Gemm's C) instead of through extra passes.
 */
import type { GPT2Config } from './config.ts';
import { linearShape, type BlockLinear } from './weights.ts';
import { DT, GraphBuilder } from '../../onnx/graph.ts';
import { loraBackward, loraForward, type LoraGraphSpec } from '../../onnx/lora-graph.ts';
import { pool, POOLED_ROWS, unpool, zerosFor } from '../../onnx/pooled-graph.ts';

interface BlockGraphSpec extends LoraGraphSpec {
  config: GPT2Config;
  targets: readonly BlockLinear[];
}

/** The block's frozen weights, as both graphs take them. */
export const GPT2_BLOCK_WEIGHTS = [
  'ln_1.weight',
  'ln_1.bias',
  'attn.c_attn.weight',
  'attn.c_attn.bias',
  'attn.c_proj.weight',
  'attn.c_proj.bias',
  'ln_2.weight',
  'ln_2.bias',
  'mlp.c_fc.weight',
  'mlp.c_fc.bias',
  'mlp.c_proj.weight',
  'mlp.c_proj.bias',
] as const;

/** What the forward can save for the backward, beyond each adapted linear's x A. */
const SAVED = ['xhat1', 'rstd1', 'q', 'k', 'v', 'p', 'attn_out', 'xhat2', 'rstd2', 'h'] as const;

const OPSET = 18;
const FLOAT = DT.FLOAT;
const GELU_C = 0.044715;
const TWO_K = 2 * Math.sqrt(2 / Math.PI);

function inputsOf(spec: BlockGraphSpec, { inference = false, pooled = false } = {}) {
  const c = spec.config;
  const d = c.nEmbd;
  const weights = GPT2_BLOCK_WEIGHTS.map((name) => {
    const linear = name.replace(/\.(weight|bias)$/, '') as BlockLinear;
    const dims = name.startsWith('ln_') ? [d] : name.endsWith('.weight') ? linearShape(c, linear) : [linearShape(c, linear)[1]];
    return { name, type: FLOAT, dims };
  });
  const lora = spec.targets.flatMap((t) => {
    const [inp, out] = linearShape(c, t);
    return [
      { name: `${t}.lora_A`, type: FLOAT, dims: [inp, spec.rank] },
      { name: `${t}.lora_B`, type: FLOAT, dims: [spec.rank, out] },
      ...(spec.dropout ? [{ name: `${t}.keep`, type: FLOAT, dims: ['tokens', inp] }] : []),
    ];
  });
  // Broadcast over heads: [B, 1, T, T] (inference: [B, 1, T, P + T]; pooled: [B, 1, 1, T], each row's last token).
  const mask = ['scale', 'fill'].map((name) => ({ name, type: FLOAT, dims: ['batch', 1, pooled ? 1 : 'sequence', inference ? 'keys' : 'sequence'] }));
  return { weights, lora, mask: [...mask, ...(pooled ? [{ name: POOLED_ROWS, type: DT.INT64, dims: ['batch'] }] : [])] };
}

function candidates(spec: BlockGraphSpec): string[] {
  return [...SAVED, ...spec.targets.map((t) => `${t}.xa`)];
}

/** What the backward graphs read of the forward (it depends on the adapted linears): the forward saves only those. */
export function gpt2SavedNames(config: GPT2Config, lora: LoraGraphSpec): string[] {
  const spec = { ...lora, config } as BlockGraphSpec;
  const used = new Set([...backward(spec, true).used, ...backward(spec, false).used]);
  return candidates(spec).filter((name) => used.has(`saved.${name}`));
}

/** The linears that a pooled block runs on the pooled rows only (c_attn makes every row's keys and values). */
export const GPT2_POOLED_LINEARS: readonly BlockLinear[] = ['attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'];

/** The saved tensors' shapes for a batch of B x T (pooled: everything after c_attn on one row of each batch row). */
export function gpt2SavedShapes(c: GPT2Config, spec: LoraGraphSpec, B: number, T: number, pooled = false): Record<string, number[]> {
  const [d, H, N] = [c.nEmbd, c.nHead, B * T];
  const [hd, Q, M] = [d / H, pooled ? 1 : T, pooled ? B : N];
  const shapes: Record<string, number[]> = {
    xhat1: [N, d],
    rstd1: [N, 1],
    q: [B, H, Q, hd],
    k: [B, H, T, hd],
    v: [B, H, T, hd],
    p: [B, H, Q, T],
    attn_out: [M, d],
    xhat2: [M, d],
    rstd2: [M, 1],
    h: [M, c.nInner],
  };
  for (const t of spec.targets) shapes[`${t}.xa`] = [GPT2_POOLED_LINEARS.includes(t as BlockLinear) ? M : N, spec.rank];
  return shapes;
}

/** What both graphs share; `like` is the [B, T, d] input (x or dy) that gives B and T. */
function ops(g: GraphBuilder, spec: BlockGraphSpec, like: string) {
  const c = spec.config;
  const d = c.nEmbd;
  const hd = d / c.nHead;
  // Made on first use: a pooled backward has no [B, T, d] input to take them from, and needs neither.
  let bt: string | undefined;
  const batchAndTime = () => (bt ??= g.op('Slice', [g.op('Shape', [like]), g.ints([0]), g.ints([2])]));
  let unit: [string, string] | undefined;
  return {
    /** x -> (xhat, rstd [N, 1]): LayerNormalization with unit weight and zero bias, the affine part apart. */
    normalize: (x: string) => {
      unit ??= [g.initializer('ones_d', FLOAT, [d], new Float32Array(d).fill(1)), g.initializer('zeros_d', FLOAT, [d], new Float32Array(d))];
      const [xhat, , rstd] = g.node('LayerNormalization', [x, ...unit], { axis: -1, epsilon: c.layerNormEpsilon }, 3);
      return { xhat: xhat!, rstd: rstd! };
    },
    affine: (xhat: string, ln: 'ln_1' | 'ln_2') => g.op('Add', [g.op('Mul', [xhat, `${ln}.weight`]), `${ln}.bias`]),
    /** Rows [N, d] -> heads [B, H, T, hd] (pooled: rows [B, d] -> [B, H, 1, hd]) and back. */
    heads: (t: string, pooled = false) =>
      g.op('Transpose', [g.op('Reshape', [t, pooled ? g.ints([-1, 1, c.nHead, hd]) : g.op('Concat', [batchAndTime(), g.ints([c.nHead, hd])], { axis: 0 })])], {
        perm: [0, 2, 1, 3],
      }),
    merge: (t: string) => g.op('Reshape', [g.op('Transpose', [t], { perm: [0, 2, 1, 3] }), g.ints([-1, d])]),
    rows: (t: string) => g.op('Reshape', [t, g.ints([-1, d])]),
    unrows: (t: string) => g.op('Reshape', [t, g.op('Shape', [like])]),
  };
}

/**
 * The block's forward. For training it returns what the backward needs; for inference (`{ inference: true }`) it
 * returns no tape but takes the keys and values of earlier positions (`past_k`, `past_v` [B, H, P, hd]; P may be 0)
 * and returns them with the new positions' (`present_k`, `present_v`): the KV cache of generation. The mask then is
 * [B, 1, T, P + T]. `pooled` (training): after c_attn, the block runs on each batch row's last token only
 * (POOLED_ROWS), the one row the classification head reads of the final block: y is [B, d] and so is its tape
 * after attention (every row's keys and values still come from c_attn); the mask then is [B, 1, 1, T].
 */
export function gpt2ForwardGraph(c: GPT2Config, loraSpec: LoraGraphSpec, { inference = false, pooled = false } = {}): Uint8Array {
  const spec = { ...loraSpec, config: c } as BlockGraphSpec;
  const g = new GraphBuilder();
  const d = c.nEmbd;
  const o = ops(g, spec, 'x');
  const saved: Record<string, string> = {};
  const linear = (name: BlockLinear, input: string) => loraForward(g, spec, name, input, g.op('Gemm', [input, `${name}.weight`, `${name}.bias`]), saved);
  const x = o.rows('x');
  const ln1 = o.normalize(x);
  const [qRows, kNew, vNew] = g
    .node('Split', [linear('attn.c_attn', o.affine(ln1.xhat, 'ln_1')), g.ints([d, d, d])], { axis: 1 }, 3)
    .map((t, i) => (i > 0 ? o.heads(t) : t));
  const q = pooled ? o.heads(pool(g, qRows!), true) : o.heads(qRows!);
  const [k, v] = inference ? [g.op('Concat', ['past_k', kNew!], { axis: 2 }), g.op('Concat', ['past_v', vNew!], { axis: 2 })] : [kNew!, vNew!];
  const p = g.op('Softmax', [g.op('Add', [g.op('Mul', [g.op('MatMul', [q, g.op('Transpose', [k], { perm: [0, 1, 3, 2] })]), 'scale']), 'fill'])], { axis: -1 });
  const attnOut = o.merge(g.op('MatMul', [p, v]));
  const x2 = g.op('Add', [pooled ? pool(g, x) : x, linear('attn.c_proj', attnOut)]);
  const ln2 = o.normalize(x2);
  const h = linear('mlp.c_fc', o.affine(ln2.xhat, 'ln_2'));
  // onnxruntime's FastGelu is the same tanh form in one pass over h (the backward recomputes it in graph ops).
  const yRows = g.op('Add', [x2, linear('mlp.c_proj', g.op('FastGelu', [h], {}, 'com.microsoft'))]);
  const y = pooled ? yRows : o.unrows(yRows);
  Object.assign(saved, { xhat1: ln1.xhat, rstd1: ln1.rstd, q, k, v, p, attn_out: attnOut, xhat2: ln2.xhat, rstd2: ln2.rstd, h });
  const { weights, lora, mask } = inputsOf(spec, { inference, pooled });
  const used = g.usedNames();
  const cache = ['k', 'v'].map((t) => ({ name: `past_${t}`, type: FLOAT, dims: ['batch', c.nHead, 'past', d / c.nHead] }));
  const out = { name: 'y', from: y, type: FLOAT, dims: pooled ? ['batch', d] : ['batch', 'sequence', d] };
  return g.build({
    name: inference ? 'gpt2_block_inference' : `gpt2_block_forward${pooled ? '_pooled' : ''}`,
    opset: OPSET,
    metadata: {},
    inputs: [{ name: 'x', type: FLOAT, dims: ['batch', 'sequence', d] }, ...mask, ...weights, ...lora, ...cache].filter((i) => used.has(i.name)),
    outputs: inference
      ? [out, { name: 'present_k', from: k, type: FLOAT }, { name: 'present_v', from: v, type: FLOAT }]
      : [out, ...gpt2SavedNames(c, spec).map((name) => ({ name: `saved.${name}`, from: saved[name]!, type: FLOAT }))],
  });
}

/**
 * `needDx`: the input gradient is wanted (every block but the lowest trained one); without it the graph stops at
 * the lowest adapted linear, as autodiff would. `pooled`: the backward of the pooled forward, from dy [B, d] of the
 * pooled rows; dx is every row's [B T, d].
 */
export function gpt2BackwardGraph(c: GPT2Config, lora: LoraGraphSpec, needDx: boolean, pooled = false): Uint8Array {
  return backward({ ...lora, config: c } as BlockGraphSpec, needDx, pooled).bytes;
}

function backward(spec: BlockGraphSpec, needDx: boolean, pooled = false): { bytes: Uint8Array; used: Set<string> } {
  const g = new GraphBuilder();
  const c = spec.config;
  const d = c.nEmbd;
  const o = ops(g, spec, 'dy');
  const s = (name: string) => `saved.${name}`;
  const outputs: Array<{ name: string; from: string }> = [];
  const order: BlockLinear[] = ['mlp.c_proj', 'mlp.c_fc', 'attn.c_proj', 'attn.c_attn'];
  const lowest = Math.max(...order.map((name, j) => (spec.targets.includes(name) ? j : -1)));
  /** dout [N, out] -> dx [N, in] (when needed), and the adapter's gradients into `outputs`. */
  const linear = (name: BlockLinear, dout: string, input: () => string): string | undefined => {
    const needInput = needDx || order.indexOf(name) < lowest;
    return loraBackward(g, spec, name, dout, needInput ? g.op('Gemm', [dout, `${name}.weight`], { transB: 1 }) : undefined, input, outputs);
  };
  const normBackward = (dout: string, ln: 'ln_1' | 'ln_2', xhat: string, rstd: string) => {
    const dxhat = g.op('Mul', [dout, `${ln}.weight`]);
    const mean = (t: string) => g.op('ReduceMean', [t, g.ints([-1])], { keepdims: 1 });
    return g.op('Mul', [rstd, g.op('Sub', [g.op('Sub', [dxhat, mean(dxhat)]), g.op('Mul', [xhat, mean(g.op('Mul', [dxhat, xhat]))])])]);
  };
  const dy = o.rows('dy');
  const h = s('h');
  // gelu(h) = h s, s = sigmoid(2u), 2u = 2k h (1 + c h^2), as gpu-server/backends/tfjs/ops.ts has it (the forward's FastGelu).
  // Recomputed rather than saved: an output costs more than the few passes over h that make it; h^2 once for both.
  const hh = g.op('Mul', [h, h]);
  const gs = g.op('Sigmoid', [g.op('Mul', [h, g.op('Add', [g.float(TWO_K), g.op('Mul', [hh, g.float(TWO_K * GELU_C)])])])]);
  // MLP: y = x2 + c_proj(gelu(c_fc(ln2(x2)))); d gelu / dh = s + h s (1 - s) 2u' = s (1 + h (1 - s) 2u'),
  // 2u' = 2k (1 + 3c h^2).
  const dg = linear('mlp.c_proj', dy, () => g.op('Mul', [h, gs]));
  const du = () => g.op('Add', [g.float(TWO_K), g.op('Mul', [hh, g.float(3 * GELU_C * TWO_K)])]);
  const dh = dg && g.op('Mul', [dg, g.op('Mul', [gs, g.op('Add', [g.float(1), g.op('Mul', [g.op('Mul', [h, g.op('Sub', [g.float(1), gs])]), du()])])])]);
  const dc = dh && linear('mlp.c_fc', dh, () => o.affine(s('xhat2'), 'ln_2'));
  if (dc) {
    const dx2 = g.op('Add', [dy, normBackward(dc, 'ln_2', s('xhat2'), s('rstd2'))]);
    // Attention: x2 = x + c_proj(merge(softmax(q k^T * scale + fill) v))
    const dMerged = linear('attn.c_proj', dx2, () => s('attn_out'));
    if (dMerged) {
      const dOut = o.heads(dMerged, pooled);
      const p = s('p');
      const dp = g.op('MatMul', [dOut, g.op('Transpose', [s('v')], { perm: [0, 1, 3, 2] })]);
      const dScores = g.op('Mul', [g.op('Mul', [p, g.op('Sub', [dp, g.op('ReduceSum', [g.op('Mul', [dp, p]), g.ints([-1])], { keepdims: 1 })])]), 'scale']);
      const dq = g.op('MatMul', [dScores, s('k')]);
      const dk = g.op('MatMul', [g.op('Transpose', [dScores], { perm: [0, 1, 3, 2] }), s('q')]);
      const dv = g.op('MatMul', [g.op('Transpose', [p], { perm: [0, 1, 3, 2] }), dOut]);
      // Pooled: the queries' gradient and the residual's reach the pooled rows only.
      const dqRows = pooled ? unpool(g, zerosFor(g, s('xhat1'), d), o.merge(dq)) : o.merge(dq);
      const dqkv = g.op('Concat', [dqRows, o.merge(dk), o.merge(dv)], { axis: -1 });
      const da = linear('attn.c_attn', dqkv, () => o.affine(s('xhat1'), 'ln_1'));
      if (da && needDx) {
        const dNorm = normBackward(da, 'ln_1', s('xhat1'), s('rstd1'));
        outputs.unshift({ name: 'dx', from: pooled ? unpool(g, dNorm, dx2) : o.unrows(g.op('Add', [dx2, dNorm])) });
      }
    }
  }
  const { weights, lora, mask } = inputsOf(spec, { pooled });
  const used = g.usedNames();
  const bytes = g.build({
    name: `gpt2_block_backward${needDx ? '' : '_lowest'}${pooled ? '_pooled' : ''}`,
    opset: OPSET,
    metadata: {},
    inputs: [
      { name: 'dy', type: FLOAT, dims: pooled ? ['batch', d] : ['batch', 'sequence', d] },
      ...mask,
      ...weights,
      ...lora,
      ...candidates(spec).map((name) => ({ name: s(name), type: FLOAT })),
    ].filter((i) => used.has(i.name)),
    outputs: outputs.map((x) => ({ ...x, type: FLOAT })),
  });
  return { bytes, used };
}
