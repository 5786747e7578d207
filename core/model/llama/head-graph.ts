/** Llama's final norm and LM head as an ONNX graph, beside its blocks' (block-graphs.ts). */
import type { LlamaConfig } from './config.ts';
import { DT, GraphBuilder } from '../../onnx/graph.ts';
import { OPSET } from './block-graphs.ts';

const FLOAT = DT.FLOAT;

/**
 * The final norm and the LM head over the whole vocabulary on `rows` [M, d] (final hidden states), with `norm.weight`
 * [d] and `head` [V, d] (the token table when tied). `logits`: the next-token logits [M, V] (generation, evaluation).
 * `loss`: with `targets` [M] (int64), the *summed* cross-entropy `loss` and its gradient `drows` [M, d]; the caller
 * runs it on chunks of rows, so that a batch's M x V logits never exist at once, and divides by the rows labelled.
 * Logits live only inside the run, in native memory.
 */
export function llamaLmHeadGraph(c: LlamaConfig, output: 'logits' | 'loss'): Uint8Array {
  const g = new GraphBuilder();
  const r = g.op('Reciprocal', [
    g.op('Sqrt', [g.op('Add', [g.op('ReduceMean', [g.op('Mul', ['rows', 'rows']), g.ints([-1])], { keepdims: 1 }), g.float(c.rmsNormEps)])]),
  ]);
  const xn = g.op('Mul', ['rows', r]);
  const logits = g.op('Gemm', [g.op('Mul', [xn, 'norm.weight']), 'head'], { transB: 1 });
  const weights = [
    { name: 'norm.weight', type: FLOAT, dims: [c.nEmbd] },
    { name: 'head', type: FLOAT, dims: [c.vocabSize, c.nEmbd] },
  ];
  const rows = { name: 'rows', type: FLOAT, dims: ['rows', c.nEmbd] };
  if (output === 'logits') {
    return g.build({
      name: 'llama_lm_head_logits',
      opset: OPSET,
      metadata: {},
      inputs: [rows, ...weights],
      outputs: [{ name: 'logits', from: logits, type: FLOAT, dims: ['rows', c.vocabSize] }],
    });
  }
  // One pass for the log-probabilities; the loss gathers the targets' and the gradient softmax - onehot subtracts 1 at
  // the targets in place of a [M, V] one-hot and a subtraction over it.
  const logProb = g.op('LogSoftmax', [logits], { axis: -1 });
  const at = g.op('Unsqueeze', ['targets', g.ints([1])]);
  const loss = g.op('Neg', [g.op('ReduceSum', [g.op('GatherElements', [logProb, at], { axis: 1 })], { keepdims: 0 })]);
  const minusOne = g.op('Expand', [g.float(-1), g.op('Shape', [at])]);
  const dLogits = g.op('ScatterElements', [g.op('Exp', [logProb]), at, minusOne], { axis: 1, reduction: 'add' });
  const dxn = g.op('Mul', [g.op('Gemm', [dLogits, 'head']), 'norm.weight']);
  const drows = g.op('Mul', [r, g.op('Sub', [dxn, g.op('Mul', [xn, g.op('ReduceMean', [g.op('Mul', [dxn, xn]), g.ints([-1])], { keepdims: 1 })])])]);
  return g.build({
    name: 'llama_lm_head_loss',
    opset: OPSET,
    metadata: {},
    inputs: [rows, { name: 'targets', type: DT.INT64, dims: ['rows'] }, ...weights],
    outputs: [
      { name: 'loss', from: loss, type: FLOAT, dims: [] },
      { name: 'drows', from: drows, type: FLOAT, dims: ['rows', c.nEmbd] },
    ],
  });
}
