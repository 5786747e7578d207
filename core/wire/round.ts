/** What the training server asks of a device for one round, and what the device reports back. */
import { checkId } from '../storage/keys.ts';
import type { Defence } from '../privacy/defence.ts';

export type ActivationDType = 'fp32' | 'fp16';

/**
 * classification: rows of text with a label; a batch carries one label per row.
 * generation: rows of a prompt and a completion; a batch carries the completion's token ids (a label per position),
 * so the completion's tokens reach the server. A device runs it only where its owner approved that.
 */
export type RoundTask = 'classification' | 'generation';

export interface RoundRequest {
  runId: string;
  round: number;
  /** The frozen prefix to run: the SHA-256 of its ONNX bytes, and a URL to GET them (presigned). */
  model: { sha256: string; url: string };
  /**
   * For a prefix exported with its token table outside the graph (it takes inputs_embeds): the table, which the
   * device verifies by streaming it once and then reads only its tokens' rows from, by byte range.
   */
  tokenTable?: { sha256: string; url: string };
  /** The segment's weights, for a graph that keeps them as ONNX external data; verified by SHA-256. */
  weights?: { sha256: string; url: string };
  /**
   * The tokenizer of a model whose tokenizer the device does not hold (Hugging Face tokenizer.json), verified by
   * SHA-256, with its start and end token ids. Without it, the device tokenizes with GPT-2's BPE.
   */
  tokenizer?: { sha256: string; url: string; bos?: number; eos: number };
  task: RoundTask;
  cut: number;
  batchSize: number;
  /** Rows longer than this many tokens are truncated; each batch is padded to its longest row. */
  seqLen: number;
  dtype: ActivationDType;
  /** The task's label set (classification; empty for generation); every shard used must have been uploaded with this one. */
  labels: string[];
  padTokenId: number;
  /** Shards to use, in this order; all of the device's shards (by name) when omitted. */
  shards?: string[];
  /** Presigned PUT URLs: one per batch, in batch order, and one for the completion manifest. */
  uploads: { batches: string[]; manifest: string };
}

export type RoundState = 'running' | 'complete' | 'failed';

export interface RoundStatus {
  device: string;
  runId: string;
  round: number;
  state: RoundState;
  batchesDone: number;
  batchesTotal: number;
  /** Failed attempts so far (retried or final), newest last. */
  failures: string[];
  /** Real (unpadded) tokens run through the prefix so far, and the time the forward passes took. */
  tokens: number;
  forwardMs: number;
  /** The device's own figure of its memory: onnxruntime's WebAssembly memory after the last batch (never shrinks). */
  wasmMemoryBytes?: number;
  /** Why the round failed, when it did. */
  error?: string;
}

export interface ManifestBatch {
  index: number;
  rows: number;
  seqLen: number;
  bytes: number;
  sha256: string;
}

/** `_complete.json`: written only after every batch object is stored. */
export interface ActivationManifest {
  version: 1;
  device: string;
  runId: string;
  round: number;
  cut: number;
  dtype: ActivationDType;
  modelSha256: string;
  rows: number;
  /** The defence every batch was uploaded under (its owner's setting), and the segment's clip norm where it clips. */
  defence: Defence;
  clip?: number;
  batches: ManifestBatch[];
}

/** Whether `v` holds an end token id and, if any, a start token id: a round's tokenizer, an approval's specialTokens. */
export function holdsTokenIds(v: Record<string, unknown>): boolean {
  const id = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0;
  return id(v.eos) && (v.bos === undefined || id(v.bos));
}

/** Checks a round request's shape; returns it typed, or throws naming the field. */
export function parseRoundRequest(value: unknown): RoundRequest {
  const r = value as Record<string, unknown>;
  const fail = (field: string, message: string): never => {
    throw new Error(`round request: field '${field}' ${message}`);
  };
  if (typeof r !== 'object' || r === null) throw new Error('round request: not a JSON object');
  const int = (field: string, min: number) => {
    const v = r[field];
    if (!Number.isSafeInteger(v) || (v as number) < min) fail(field, `must be an integer >= ${min}`);
    return v as number;
  };
  if (typeof r.runId !== 'string') fail('runId', 'must be a string');
  try {
    checkId('run', r.runId as string);
  } catch (e) {
    fail('runId', (e as Error).message);
  }
  const model = r.model as Record<string, unknown> | undefined;
  if (typeof model?.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(model.sha256)) fail('model.sha256', 'must be a hex SHA-256');
  if (typeof model?.url !== 'string') fail('model.url', 'must be a URL');
  const table = r.tokenTable as Record<string, unknown> | undefined;
  if (table !== undefined && (typeof table?.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(table.sha256) || typeof table.url !== 'string')) {
    fail('tokenTable', 'must hold a hex sha256 and a url');
  }
  const weights = r.weights as Record<string, unknown> | undefined;
  if (weights !== undefined && (typeof weights?.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(weights.sha256) || typeof weights.url !== 'string')) {
    fail('weights', 'must hold a hex sha256 and a url');
  }
  const tok = r.tokenizer as Record<string, unknown> | undefined;
  if (tok !== undefined && (typeof tok?.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(tok.sha256) || typeof tok.url !== 'string' || !holdsTokenIds(tok))) {
    fail('tokenizer', 'must hold a hex sha256, a url, and token ids eos (and bos)');
  }
  if (r.dtype !== 'fp32' && r.dtype !== 'fp16') fail('dtype', 'must be "fp32" or "fp16"');
  const task = r.task ?? 'classification';
  if (task !== 'classification' && task !== 'generation') fail('task', 'must be "classification" or "generation"');
  if (task === 'classification' && (!Array.isArray(r.labels) || r.labels.length < 2 || !r.labels.every((l) => typeof l === 'string')))
    fail('labels', 'must list at least two labels');
  if (task === 'generation' && r.labels !== undefined && !(Array.isArray(r.labels) && r.labels.length === 0))
    fail('labels', 'must be empty for a generation round');
  if (r.shards !== undefined && (!Array.isArray(r.shards) || !r.shards.every((s) => typeof s === 'string'))) fail('shards', 'must be a list of shard names');
  const uploads = r.uploads as Record<string, unknown> | undefined;
  if (!Array.isArray(uploads?.batches) || !uploads.batches.every((u) => typeof u === 'string')) fail('uploads.batches', 'must be a list of URLs');
  if (typeof uploads?.manifest !== 'string') fail('uploads.manifest', 'must be a URL');
  return {
    runId: r.runId as string,
    round: int('round', 0),
    model: { sha256: model!.sha256 as string, url: model!.url as string },
    tokenTable: table && { sha256: table.sha256 as string, url: table.url as string },
    ...(weights ? { weights: { sha256: weights.sha256 as string, url: weights.url as string } } : {}),
    ...(tok
      ? {
          tokenizer: {
            sha256: tok.sha256 as string,
            url: tok.url as string,
            eos: tok.eos as number,
            ...(tok.bos === undefined ? {} : { bos: tok.bos as number }),
          },
        }
      : {}),
    task: task as RoundTask,
    cut: int('cut', 0),
    batchSize: int('batchSize', 1),
    seqLen: int('seqLen', 1),
    dtype: r.dtype as ActivationDType,
    labels: (r.labels ?? []) as string[],
    padTokenId: int('padTokenId', 0),
    shards: r.shards as string[] | undefined,
    uploads: { batches: uploads!.batches as string[], manifest: uploads!.manifest as string },
  };
}
