/**
 * The device prefix as an ONNX graph: token embeddings and blocks [0, cut) of any family, written from TypeScript.
 * Inputs `input_ids` [B, T] int64 and `attention_mask` [B, T] int64; output `hidden_states` [B, T, d] float32 at the
 * cut. Same padding conventions as every other implementation (core/model/masking.ts). The blocks themselves are the
 * family's (`Family.prefixBlocks`, in its folder); what surrounds them is shared here.
 *
 * weights 'int8': every block linear is stored as int8 with a per-column scale and runs as an integer product
 * (MatMulInteger) of activations quantized per position (one scale per row of [B * T, d]); the token embedding table
 * is int8 with a per-row scale. Position embeddings and norms stay float32.
 *
 * tokenEmbedding 'input': the graph takes `inputs_embeds` [B, T, d] float32 instead of `input_ids`, and the caller
 * looks token rows up itself (core/onnx/embedding.ts). The vocabulary table then stays outside the ONNX session,
 * which otherwise holds it several times over in WebAssembly memory: that is what lets GPT-2 small's int8 prefix
 * fit a Worker's 128 MB.
 */
import { familyOf, type Model } from '../model/family.ts';
import { requireParam } from '../model/params.ts';
import { tokenTableName } from './embedding.ts';
import { DT, GraphBuilder } from './graph.ts';
import type { PrefixContext, PrefixWeights } from './prefix-context.ts';
import { quantizeInt8 } from './quantize.ts';

export type { PrefixWeights } from './prefix-context.ts';

export interface PrefixOptions {
  cut: number;
  weights?: PrefixWeights;
  tokenEmbedding?: 'graph' | 'input';
}

export const PREFIX_OPSET = 20;
export const PREFIX_OUTPUT = 'hidden_states';
/** Where a segment's graph finds its external weights: the name a session is given them under. */
export const PREFIX_DATA_LOCATION = 'prefix.onnx.data';

export function exportPrefix(model: Model, options: PrefixOptions): Uint8Array {
  const { g, build } = prefixGraph(model, options);
  return g.build(build);
}

/**
 * The same prefix with its weights as ONNX external data (one file, `location`): what lets a block of
 * Llama-3.2-1B's size fit a Worker (docs/stack.md: 86 MB at load instead of 177 MB).
 */
export function exportPrefixExternal(
  model: Model,
  options: PrefixOptions,
  location = PREFIX_DATA_LOCATION,
): { onnx: Uint8Array; data: Uint8Array; location: string } {
  const { g, build } = prefixGraph(model, options);
  return { ...g.buildExternal(build, location), location };
}

function prefixGraph(model: Model, { cut, weights = 'fp32', tokenEmbedding = 'graph' }: PrefixOptions) {
  const c = model.config;
  if (!Number.isInteger(cut) || cut < 0 || cut > c.nLayer) {
    throw new Error(`cut ${cut} is out of range: a ${c.modelType} model with ${c.nLayer} blocks has cuts 0..${c.nLayer}`);
  }
  const g = new GraphBuilder();
  const d = c.nEmbd;
  const p = (name: string) => requireParam(model.params, name);
  const f32 = (name: string, dims: number[]) => g.initializer(name, DT.FLOAT, dims, p(name));
  let activationZero = '';
  const zeroPoint = () => (activationZero ||= g.initializer('activation_zero_point', DT.UINT8, [], new Uint8Array([128])));
  const linear = (x: string, name: string, w: Float32Array, inp: number, out: number, bias?: Float32Array): string => {
    const b = bias ? g.initializer(`${name}.bias`, DT.FLOAT, [out], bias) : '';
    if (weights === 'fp32') {
      const y = g.op('MatMul', [x, g.initializer(`${name}.weight`, DT.FLOAT, [inp, out], w)]);
      return bias ? g.op('Add', [y, b]) : y;
    }
    const q = quantizeInt8(w, inp, out, 'column');
    const wq = g.initializer(`${name}.weight_int8`, DT.INT8, [inp, out], q.values);
    const ws = g.initializer(`${name}.weight_scale`, DT.FLOAT, [out], q.scales);
    // Each position's activations quantized with a scale of their own (symmetric, stored as uint8 around 128), so a
    // position's output depends on its own row only: never on the other rows, the padding or the length of the
    // batch, which a per-tensor scale (DynamicQuantizeMatMul) would let the server vary at will (docs/SECURITY.md).
    const scale = g.op('Div', [g.op('Max', [g.op('ReduceMax', [g.op('Abs', [x]), g.ints([-1])], { keepdims: 1 }), g.float(1e-30)]), g.float(127)]);
    const xq = g.op('Cast', [g.op('Add', [g.op('Round', [g.op('Div', [x, scale])]), g.float(128)])], { to: DT.UINT8 });
    const products = g.op('MatMulInteger', [xq, wq, zeroPoint()]);
    const y = g.op('Mul', [g.op('Mul', [g.op('Cast', [products], { to: DT.FLOAT }), scale]), ws]);
    return bias ? g.op('Add', [y, b]) : y;
  };

  // Token embeddings.
  const table = tokenTableName(c);
  let tokens: string;
  let shapeSource: string; // a [B, T, ...] input to read the sequence length from
  if (tokenEmbedding === 'input') {
    tokens = shapeSource = 'inputs_embeds';
  } else if (weights === 'fp32') {
    tokens = g.op('Gather', [f32(table, [c.vocabSize, d]), 'input_ids']);
    shapeSource = 'input_ids';
  } else {
    const q = quantizeInt8(p(table), c.vocabSize, d, 'row');
    const rows = g.op('Gather', [g.initializer(`${table}_int8`, DT.INT8, [c.vocabSize, d], q.values), 'input_ids']);
    const scales = g.op('Gather', [g.initializer(`${table}_scale`, DT.FLOAT, [c.vocabSize], q.scales), 'input_ids']);
    tokens = g.op('Mul', [g.op('Cast', [rows], { to: DT.FLOAT }), g.op('Unsqueeze', [scales, g.ints([-1])])]);
    shapeSource = 'input_ids';
  }

  const positions = g.op('Max', [g.op('Sub', [g.op('CumSum', ['attention_mask', g.ints([1], true)]), g.ints([1], true)]), g.ints([0], true)]);
  // Computed once, shared by every block (none at cut 0).
  const attentionAllowed = () => {
    const seq = g.op('Gather', [g.op('Shape', [shapeSource]), g.ints([1], true)]);
    const range = g.op('Range', [g.ints([0], true), seq, g.ints([1], true)]);
    const causal = g.op('LessOrEqual', [g.op('Unsqueeze', [range, g.ints([0])]), g.op('Unsqueeze', [range, g.ints([1])])]);
    const keys = g.op('Cast', [g.op('Unsqueeze', ['attention_mask', g.ints([1, 2])])], { to: DT.BOOL });
    return g.op('And', [causal, keys]);
  };
  const ctx: PrefixContext = { g, f32, linear, positions, allowed: cut > 0 ? attentionAllowed() : '' };

  const x = familyOf(c).prefixBlocks(ctx, model, tokens, cut);

  const inputs =
    tokenEmbedding === 'input'
      ? [{ name: 'inputs_embeds', type: DT.FLOAT, dims: ['batch', 'sequence', d] }]
      : [{ name: 'input_ids', type: DT.INT64, dims: ['batch', 'sequence'] }];
  return {
    g,
    build: {
      name: `${c.modelType}-prefix-cut${cut}`,
      inputs: [...inputs, { name: 'attention_mask', type: DT.INT64, dims: ['batch', 'sequence'] }],
      outputs: [{ name: PREFIX_OUTPUT, type: DT.FLOAT, dims: ['batch', 'sequence', d], from: x }],
      opset: PREFIX_OPSET,
      metadata: { cut: String(cut), weights, token_embedding: tokenEmbedding, n_embd: String(d), model_type: c.modelType },
    },
  };
}
