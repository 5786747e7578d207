/** What OrtBlocks takes and gives: its options, adapter arrays, tapes, KV caches and profile rows. */
import type * as ort from 'onnxruntime-node';

export interface OrtOptions {
  /** 'cpu' or 'webgpu' (onnxruntime-node's bundled provider). */
  provider: 'cpu' | 'webgpu';
  /** Threads of onnxruntime's CPU kernels (default: every core; onnxruntime's own default takes physical cores only). */
  threads?: number;
  /** Record every node's time (onnxruntime's profiler) for profile(). */
  profile?: boolean;
  /**
   * Bytes of logits one run of the LM head may hold (default 128 MiB: 261 rows at Llama 3's vocabulary). Larger
   * batches take several runs; each run streams the whole head through two products, so fewer runs are faster.
   */
  lmHeadLogitsBytes?: number;
}

/** Time by operator over the steps run, from onnxruntime's profiler. */
export interface OpTime {
  graph: string;
  op: string;
  ms: number;
  share: number;
}

/** One adapted linear's weights and dropout multiplier for a step, as flat arrays. */
export interface AdapterArrays {
  a: Float32Array;
  b: Float32Array;
  keep?: Float32Array;
}

export type BlockArrays = Record<string, AdapterArrays>;

export interface Tape {
  tensors: Array<Record<string, ort.Tensor>>;
  shape: [number, number];
  /** The pooled rows (b T + t), when the last block ran on them alone. */
  pooled?: Int32Array;
}

/** Keys and values of the positions seen so far, by block. */
export type KvCache = Array<{ k: ort.Tensor; v: ort.Tensor }>;
