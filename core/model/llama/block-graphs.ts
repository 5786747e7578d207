/**
 * A Llama block's training step as two ONNX graphs, as core/model/gpt2/block-graphs.ts does GPT-2's: RMSNorm, rotary embeddings
 * (cos and sin are inputs, computed once per batch from the position ids), grouped-query attention laid out
 * [B, KV, rep, T, hd] so that MatMul's broadcasting pairs each key/value head with its query heads (its gradients sum
 * over them), SwiGLU, no biases. Weights stay as published, nn.Linear's [out, in]: Gemm's transB reads them.
 * The math is what TfLlama computes (gpu-server/backends/tfjs/llama.ts), differentiated by hand.
 */
import type { LlamaConfig } from './config.ts';
import { LLAMA_LINEARS, llamaLinearShape, type LlamaLinear } from './weights.ts';
import { DT, GraphBuilder } from '../../onnx/graph.ts';
import { loraBackward, loraForward, type LoraGraphSpec } from '../../onnx/lora-graph.ts';
import { pool, POOLED_ROWS, unpool, zerosFor } from '../../onnx/pooled-graph.ts';

export const OPSET = 18;
const FLOAT = DT.FLOAT;
const NORMS = ['input_layernorm.weight', 'post_attention_layernorm.weight'] as const;
export const LLAMA_BLOCK_WEIGHTS = [...NORMS, ...LLAMA_LINEARS.map((l) => `${l}.weight`)];

/** What the forward can save for the backward, beyond each adapted linear's x A. */
const SAVED = ['xn1', 'r1', 'q', 'k', 'v', 'p', 'attn_out', 'xn2', 'r2', 'gate', 'up'] as const;

/** Backward meets the linears top down; those on one level share their input. */
const LEVEL: Record<LlamaLinear, number> = {
  'mlp.down_proj': 0,
  'mlp.gate_proj': 1,
  'mlp.up_proj': 1,
  'self_attn.o_proj': 2,
  'self_attn.q_proj': 3,
  'self_attn.k_proj': 3,
  'self_attn.v_proj': 3,
};

function inputsOf(c: LlamaConfig, spec: LoraGraphSpec, { inference = false, pooled = false } = {}) {
  const weights = LLAMA_BLOCK_WEIGHTS.map((name) => ({
    name,
    type: FLOAT,
    dims: name.endsWith('layernorm.weight') ? [c.nEmbd] : llamaLinearShape(c, name.replace(/\.weight$/, '') as LlamaLinear),
  }));
  const lora = spec.targets.flatMap((t) => {
    const [out, inp] = llamaLinearShape(c, t as LlamaLinear);
    return [
      { name: `${t}.lora_A`, type: FLOAT, dims: [inp, spec.rank] },
      { name: `${t}.lora_B`, type: FLOAT, dims: [spec.rank, out] },
      ...(spec.dropout ? [{ name: `${t}.keep`, type: FLOAT, dims: ['tokens', inp] }] : []),
    ];
  });
  // Broadcast over key/value heads and the query heads of each: [B, 1, 1, T, T] (inference: [B, 1, 1, T, P + T];
  // pooled: [B, 1, 1, 1, T]) and [B, 1, 1, T, hd] (pooled: the keys' and, at the pooled rows, the queries').
  const shared = [
    ...['scale', 'fill'].map((name) => ({ name, type: FLOAT, dims: ['batch', 1, 1, pooled ? 1 : 'sequence', inference ? 'keys' : 'sequence'] })),
    ...['cos', 'sin'].map((name) => ({ name, type: FLOAT, dims: ['batch', 1, 1, 'sequence', c.headDim] })),
    ...(pooled
      ? [...POOLED_ROTARY.map((name) => ({ name, type: FLOAT, dims: ['batch', 1, 1, 1, c.headDim] })), { name: POOLED_ROWS, type: DT.INT64, dims: ['batch'] }]
      : []),
  ];
  return { weights, lora, shared };
}

function candidates(spec: LoraGraphSpec): string[] {
  return [...SAVED, ...spec.targets.map((t) => `${t}.xa`)];
}

export function llamaSavedNames(c: LlamaConfig, spec: LoraGraphSpec): string[] {
  const used = new Set([...backward(c, spec, true).used, ...backward(c, spec, false).used]);
  return candidates(spec).filter((name) => used.has(`saved.${name}`));
}

/** The saved tensors' shapes for a batch of B x T (pooled: everything after the projections on the pooled rows). */
export function llamaSavedShapes(c: LlamaConfig, spec: LoraGraphSpec, B: number, T: number, pooled = false): Record<string, number[]> {
  const { nEmbd: d, nKvHead: KV, headDim: hd, nInner } = c;
  const [rep, N, Q, M] = [c.nHead / KV, B * T, pooled ? 1 : T, pooled ? B : B * T];
  const shapes: Record<string, number[]> = {
    xn1: [N, d],
    r1: [N, 1],
    q: [B, KV, rep, Q, hd],
    k: [B, KV, 1, T, hd],
    v: [B, KV, 1, T, hd],
    p: [B, KV, rep, Q, T],
    attn_out: [M, c.nHead * hd],
    xn2: [M, d],
    r2: [M, 1],
    gate: [M, nInner],
    up: [M, nInner],
  };
  for (const t of spec.targets) shapes[`${t}.xa`] = [LLAMA_POOLED_LINEARS.includes(t as LlamaLinear) ? M : N, spec.rank];
  return shapes;
}

/** The linears that a pooled block runs on the pooled rows only (q, k and v project every row). */
export const LLAMA_POOLED_LINEARS: readonly LlamaLinear[] = ['self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];

/** A pooled block's rotary cos and sin at the pooled rows' positions, for their queries. */
const POOLED_ROTARY = ['pooled_cos', 'pooled_sin'] as const;

function ops(g: GraphBuilder, c: LlamaConfig, spec: LoraGraphSpec, like: string) {
  const { nKvHead: KV, headDim: hd } = c;
  // Made on first use: a pooled backward has no [B, T, d] input to take them from, and needs neither.
  let bt: string | undefined;
  const batchAndTime = () => (bt ??= g.op('Slice', [g.op('Shape', [like]), g.ints([0]), g.ints([2])]));
  const half = hd / 2;
  return {
    rows: (t: string) => g.op('Reshape', [t, g.ints([-1, c.nEmbd])]),
    unrows: (t: string) => g.op('Reshape', [t, g.op('Shape', [like])]),
    /** Rows [N, heads * hd] -> [B, KV, heads / KV, T, hd] (pooled: rows [B, heads * hd] -> T = 1), and back. */
    heads: (t: string, perKv: number, pooled = false) =>
      g.op(
        'Transpose',
        [g.op('Reshape', [t, pooled ? g.ints([-1, 1, KV, perKv, hd]) : g.op('Concat', [batchAndTime(), g.ints([KV, perKv, hd])], { axis: 0 })])],
        { perm: [0, 2, 3, 1, 4] },
      ),
    merge: (t: string, width: number) => g.op('Reshape', [g.op('Transpose', [t], { perm: [0, 3, 1, 2, 4] }), g.ints([-1, width])]),
    /** HF's rotate_half, [a, b] -> [-b, a], and its transpose [a, b] -> [b, -a]. */
    rotateHalf: (t: string, transpose: boolean) => {
      const [a, b] = g.node('Split', [t, g.ints([half, half])], { axis: -1 }, 2);
      return transpose ? g.op('Concat', [b!, g.op('Neg', [a!])], { axis: -1 }) : g.op('Concat', [g.op('Neg', [b!]), a!], { axis: -1 });
    },
    /** x -> (x r, r), r = 1 / sqrt(mean(x^2) + eps). */
    rms: (x: string) => {
      const r = g.op('Reciprocal', [
        g.op('Sqrt', [g.op('Add', [g.op('ReduceMean', [g.op('Mul', [x, x]), g.ints([-1])], { keepdims: 1 }), g.float(c.rmsNormEps)])]),
      ]);
      return { xn: g.op('Mul', [x, r]), r };
    },
  };
}

/**
 * The block's forward. For training it returns what the backward needs; for inference (`{ inference: true }`) it
 * returns no tape but takes the keys and values of earlier positions (`past_k`, `past_v` [B, KV, 1, P, hd], rotated;
 * P may be 0) and returns them with the new positions' (`present_k`, `present_v`): generation's KV cache. `pooled`
 * (training): after the projections, on the pooled rows only (pooled-graph.ts); y is [B, d].
 */
export function llamaForwardGraph(c: LlamaConfig, spec: LoraGraphSpec, { inference = false, pooled = false } = {}): Uint8Array {
  const g = new GraphBuilder();
  const { nHead: H, nKvHead: KV, headDim: hd } = c;
  const o = ops(g, c, spec, 'x');
  const saved: Record<string, string> = {};
  const linear = (name: LlamaLinear, input: string) => loraForward(g, spec, name, input, g.op('Gemm', [input, `${name}.weight`], { transB: 1 }), saved);
  const rope = (t: string, [cos, sin] = ['cos', 'sin']) => g.op('Add', [g.op('Mul', [t, cos!]), g.op('Mul', [o.rotateHalf(t, false), sin!])]);
  const x = o.rows('x');
  const n1 = o.rms(x);
  const h = g.op('Mul', [n1.xn, 'input_layernorm.weight']);
  const qRows = linear('self_attn.q_proj', h);
  const q = pooled ? rope(o.heads(pool(g, qRows), H / KV, true), [...POOLED_ROTARY]) : rope(o.heads(qRows, H / KV));
  const kNew = rope(o.heads(linear('self_attn.k_proj', h), 1));
  const vNew = o.heads(linear('self_attn.v_proj', h), 1);
  const [k, v] = inference ? [g.op('Concat', ['past_k', kNew], { axis: 3 }), g.op('Concat', ['past_v', vNew], { axis: 3 })] : [kNew, vNew];
  const p = g.op('Softmax', [g.op('Add', [g.op('Mul', [g.op('MatMul', [q, g.op('Transpose', [k], { perm: [0, 1, 2, 4, 3] })]), 'scale']), 'fill'])], {
    axis: -1,
  });
  const attnOut = o.merge(g.op('MatMul', [p, v]), H * hd);
  const x2 = g.op('Add', [pooled ? pool(g, x) : x, linear('self_attn.o_proj', attnOut)]);
  const n2 = o.rms(x2);
  const h2 = g.op('Mul', [n2.xn, 'post_attention_layernorm.weight']);
  const gate = linear('mlp.gate_proj', h2);
  const up = linear('mlp.up_proj', h2);
  const yRows = g.op('Add', [x2, linear('mlp.down_proj', g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]))]);
  const y = pooled ? yRows : o.unrows(yRows);
  Object.assign(saved, { xn1: n1.xn, r1: n1.r, q, k, v, p, attn_out: attnOut, xn2: n2.xn, r2: n2.r, gate, up });
  const { weights, lora, shared } = inputsOf(c, spec, { inference, pooled });
  const used = g.usedNames();
  const cache = ['k', 'v'].map((t) => ({ name: `past_${t}`, type: FLOAT, dims: ['batch', KV, 1, 'past', hd] }));
  const out = { name: 'y', from: y, type: FLOAT, dims: pooled ? ['batch', c.nEmbd] : ['batch', 'sequence', c.nEmbd] };
  return g.build({
    name: inference ? 'llama_block_inference' : `llama_block_forward${pooled ? '_pooled' : ''}`,
    opset: OPSET,
    metadata: {},
    inputs: [{ name: 'x', type: FLOAT, dims: ['batch', 'sequence', c.nEmbd] }, ...shared, ...weights, ...lora, ...cache].filter((i) => used.has(i.name)),
    outputs: inference
      ? [out, { name: 'present_k', from: k, type: FLOAT }, { name: 'present_v', from: v, type: FLOAT }]
      : [out, ...llamaSavedNames(c, spec).map((name) => ({ name: `saved.${name}`, from: saved[name]!, type: FLOAT }))],
  });
}

/** `pooled`: the backward of the pooled forward, from dy [B, d] of the pooled rows; dx is every row's [B T, d]. */
export function llamaBackwardGraph(c: LlamaConfig, spec: LoraGraphSpec, needDx: boolean, pooled = false): Uint8Array {
  return backward(c, spec, needDx, pooled).bytes;
}

function backward(c: LlamaConfig, spec: LoraGraphSpec, needDx: boolean, pooled = false): { bytes: Uint8Array; used: Set<string> } {
  const g = new GraphBuilder();
  const { nHead: H, nKvHead: KV, headDim: hd } = c;
  const o = ops(g, c, spec, 'dy');
  const s = (name: string) => `saved.${name}`;
  const outputs: Array<{ name: string; from: string }> = [];
  const lowest = Math.max(...LLAMA_LINEARS.map((name) => (spec.targets.includes(name) ? LEVEL[name] : -1)));
  /** dout [N, out] -> dx [N, in] (when needed), and the adapter's gradients into `outputs`. */
  const linear = (name: LlamaLinear, dout: string, input: () => string): string | undefined =>
    loraBackward(g, spec, name, dout, needDx || LEVEL[name] < lowest ? g.op('Gemm', [dout, `${name}.weight`]) : undefined, input, outputs);
  const sum = (terms: Array<string | undefined>) =>
    terms.filter((t): t is string => t !== undefined).reduce<string | undefined>((a, t) => (a ? g.op('Add', [a, t]) : t), undefined);
  /** y = x r w: dx = r (dxn - xn mean(dxn xn)), dxn = dout w. */
  const rmsBackward = (dout: string, weight: string, xn: string, r: string) => {
    const dxn = g.op('Mul', [dout, weight]);
    return g.op('Mul', [r, g.op('Sub', [dxn, g.op('Mul', [xn, g.op('ReduceMean', [g.op('Mul', [dxn, xn]), g.ints([-1])], { keepdims: 1 })])])]);
  };
  const ropeBackward = (d: string, [cos, sin] = ['cos', 'sin']) => g.op('Add', [g.op('Mul', [d, cos!]), o.rotateHalf(g.op('Mul', [d, sin!]), true)]);
  const dy = o.rows('dy');
  const [gate, up] = [s('gate'), s('up')];
  const sg = g.op('Sigmoid', [gate]);
  const silu = g.op('Mul', [gate, sg]);
  // MLP: y = x2 + down(silu(gate(h2)) up(h2)), h2 = rms(x2) w2; silu'(g) = s (1 + g (1 - s)).
  const da = linear('mlp.down_proj', dy, () => g.op('Mul', [silu, up]));
  const h2 = once(() => g.op('Mul', [s('xn2'), 'post_attention_layernorm.weight']));
  const dh2 =
    da &&
    sum([
      linear(
        'mlp.gate_proj',
        g.op('Mul', [g.op('Mul', [da, up]), g.op('Mul', [sg, g.op('Add', [g.float(1), g.op('Mul', [gate, g.op('Sub', [g.float(1), sg])])])])]),
        h2,
      ),
      linear('mlp.up_proj', g.op('Mul', [da, silu]), h2),
    ]);
  if (dh2) {
    const dx2 = g.op('Add', [dy, rmsBackward(dh2, 'post_attention_layernorm.weight', s('xn2'), s('r2'))]);
    // Attention: x2 = x + o_proj(merge(softmax(rope(q) rope(k)^T * scale + fill) v)), h = rms(x) w1.
    const dMerged = linear('self_attn.o_proj', dx2, () => s('attn_out'));
    if (dMerged) {
      const dOut = o.heads(dMerged, H / KV, pooled);
      const p = s('p');
      const t = (x: string) => g.op('Transpose', [x], { perm: [0, 1, 2, 4, 3] });
      const dp = g.op('MatMul', [dOut, t(s('v'))]);
      const dScores = g.op('Mul', [g.op('Mul', [p, g.op('Sub', [dp, g.op('ReduceSum', [g.op('Mul', [dp, p]), g.ints([-1])], { keepdims: 1 })])]), 'scale']);
      // Keys and values are shared by the query heads of their group: their gradients sum over them (axis 2).
      const overGroup = (x: string) => g.op('ReduceSum', [x, g.ints([2])], { keepdims: 1 });
      const dq = ropeBackward(g.op('MatMul', [dScores, s('k')]), pooled ? [...POOLED_ROTARY] : undefined);
      const dk = ropeBackward(overGroup(g.op('MatMul', [t(dScores), s('q')])));
      const dv = overGroup(g.op('MatMul', [t(p), dOut]));
      const h = once(() => g.op('Mul', [s('xn1'), 'input_layernorm.weight']));
      // Pooled: the queries' gradient and the residual's reach the pooled rows only.
      const dqRows = pooled ? unpool(g, zerosFor(g, s('xn1'), H * hd), o.merge(dq, H * hd)) : o.merge(dq, H * hd);
      const dh = sum([
        linear('self_attn.q_proj', dqRows, h),
        linear('self_attn.k_proj', o.merge(dk, KV * hd), h),
        linear('self_attn.v_proj', o.merge(dv, KV * hd), h),
      ]);
      if (dh && needDx) {
        const dNorm = rmsBackward(dh, 'input_layernorm.weight', s('xn1'), s('r1'));
        outputs.unshift({ name: 'dx', from: pooled ? unpool(g, dNorm, dx2) : o.unrows(g.op('Add', [dx2, dNorm])) });
      }
    }
  }
  const { weights, lora, shared } = inputsOf(c, spec, { pooled });
  const used = g.usedNames();
  const bytes = g.build({
    name: `llama_block_backward${needDx ? '' : '_lowest'}${pooled ? '_pooled' : ''}`,
    opset: OPSET,
    metadata: {},
    inputs: [
      { name: 'dy', type: FLOAT, dims: pooled ? ['batch', c.nEmbd] : ['batch', 'sequence', c.nEmbd] },
      ...shared,
      ...weights,
      ...lora,
      ...candidates(spec).map((name) => ({ name: s(name), type: FLOAT })),
    ].filter((i) => used.has(i.name)),
    outputs: outputs.map((x) => ({ ...x, type: FLOAT })),
  });
  return { bytes, used };
}

/** A node made on first use only, and once: linears that share an input share the node that makes it. */
function once(make: () => string): () => string {
  let name: string | undefined;
  return () => (name ??= make());
}
