/**
 * Pooled blocks, in the block graphs of every family: a classification head reads one row of the final hidden states
 * per batch row (its last token), so the last block computes every row's keys and values and the rest (queries,
 * attention, the output projection, the MLP) for those rows only. POOLED_ROWS is an input: the rows' b T + t.
 */
import type { GraphBuilder } from './graph.ts';

export const POOLED_ROWS = 'pooled_rows';

/** Rows [N, n] -> the pooled rows [B, n]. */
export const pool = (g: GraphBuilder, t: string): string => g.op('Gather', [t, POOLED_ROWS]);

/** `into` [N, n] with t [B, n] added at the pooled rows: gradients back to every row. */
export const unpool = (g: GraphBuilder, into: string, t: string): string =>
  g.op('ScatterND', [into, g.op('Unsqueeze', [POOLED_ROWS, g.ints([1])]), t], { reduction: 'add' });

/** Zeros [N, n] of the rows of `like` [N, ...]: what a gradient that reaches only the pooled rows is unpooled into. */
export const zerosFor = (g: GraphBuilder, like: string, n: number): string =>
  g.op('ConstantOfShape', [g.op('Concat', [g.op('Slice', [g.op('Shape', [like]), g.ints([0]), g.ints([1])]), g.ints([n])], { axis: 0 })]);
