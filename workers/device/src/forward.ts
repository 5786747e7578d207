/** One batch on the device: tokenize its rows, run the frozen prefix, and encode the activations for upload. */
import { PREFIX_OUTPUT } from '../../../core/onnx/prefix.ts';
import { GPT2Tokenizer } from '../../../core/tokenizer/gpt2.ts';
import { HfTokenizer } from '../../../core/tokenizer/hf.ts';
import type { Tokenizer } from '../../../core/tokenizer/tokenizer.ts';
import { encodeActivationBatch } from '../../../core/wire/activations.ts';
import type { RoundRequest } from '../../../core/wire/round.ts';
import { sha256Hex } from '../../../core/auth/signing.ts';
import { lookupTokens, type TokenTable } from '../../../core/onnx/embedding.ts';
import { RoundError } from './errors.ts';
import { ModelHashMismatch, ort } from './onnx.ts';
import { storageFetch } from './storage.ts';
import { calibrationClip, defendHidden, type DefenceRun } from '../../../core/privacy/defend.ts';
import type { EncodedRows } from './encode.ts';
import { canonicalDefence, ceiledNoiseBound } from '../../../core/privacy/defence.ts';

type Request = Omit<RoundRequest, 'uploads'>;

const gpt2 = new GPT2Tokenizer();

/**
 * The round's tokenizer: the tokenizer.json it names, fetched and checked against its SHA-256 (the owner approved
 * that hash with the segment), or GPT-2's BPE, which the device holds.
 */
export async function roundTokenizer(r: Request, origins: readonly string[]): Promise<Tokenizer> {
  if (!r.tokenizer) return gpt2;
  const res = await storageFetch(origins, 'tokenizer.url', r.tokenizer.url);
  if (!res.ok) throw new RoundError(`tokenizer GET failed: HTTP ${res.status}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  const actual = await sha256Hex(bytes);
  if (actual !== r.tokenizer.sha256) throw new ModelHashMismatch(`tokenizer hash mismatch: expected ${r.tokenizer.sha256}, got ${actual}`);
  const { bos, eos } = r.tokenizer;
  return new HfTokenizer(JSON.parse(new TextDecoder().decode(bytes)), {}, { bos, eos, separator: eos, pad: r.padTokenId }, { decoder: false });
}

/** Encoded rows through the prefix: the output tensor [batch, seq, d], the caller's to dispose once read. */
async function runPrefix(
  session: ort.InferenceSession,
  enc: EncodedRows,
  table: TokenTable | undefined,
): Promise<{ output: ort.Tensor; hidden: Float32Array; d: number; forwardMs: number }> {
  const shape = [enc.rows, enc.seqLen];
  const feeds: Record<string, ort.Tensor> = { attention_mask: new ort.Tensor('int64', BigInt64Array.from(enc.attentionMask, BigInt), shape) };
  if (session.inputNames.includes('inputs_embeds')) {
    if (!table) throw new RoundError('the model segment takes inputs_embeds: the round request needs a tokenTable');
    feeds.inputs_embeds = new ort.Tensor('float32', lookupTokens(table, enc.ids), [...shape, table.nEmbd]);
  } else {
    feeds.input_ids = new ort.Tensor('int64', BigInt64Array.from(enc.ids, BigInt), shape);
  }
  const started = performance.now();
  const out = await session.run(feeds);
  const forwardMs = performance.now() - started;
  const output = out[PREFIX_OUTPUT];
  return { output, hidden: output.data as Float32Array, d: output.dims[2], forwardMs };
}

/** The segment's clip norm, from the calibration text (the same for every party that runs the segment). */
export async function segmentClip(session: ort.InferenceSession, calibration: EncodedRows, table: TokenTable | undefined): Promise<number> {
  const { output, hidden, d } = await runPrefix(session, calibration, table);
  const clip = calibrationClip(hidden, calibration.attentionMask, d);
  output.dispose();
  return clip;
}

/**
 * One encoded batch through the prefix and the owner's defence, encoded for upload; `table`: the shard's token
 * rows, for a segment that takes inputs_embeds.
 */
export async function forwardBatch(
  session: ort.InferenceSession,
  enc: EncodedRows,
  request: Request,
  device: string,
  batch: number,
  table: TokenTable | undefined,
  defence: DefenceRun,
): Promise<{ bytes: Uint8Array; rows: number; seqLen: number; tokens: number; forwardMs: number }> {
  const { output, hidden, d, forwardMs } = await runPrefix(session, enc, table);
  // The server would refuse what such a defence uploads: say so here, before anything leaves.
  const noise = ceiledNoiseBound(defence.defence, defence.clip, d);
  if (typeof noise === 'string') {
    output.dispose();
    throw new RoundError(`this device's ${noise}; its owner can set a larger epsilon`);
  }
  // In place: the output's buffer is this call's own until it is disposed below.
  defendHidden(hidden, enc.ids, enc.attentionMask, enc.rows, enc.seqLen, d, defence);
  const bytes = encodeActivationBatch(
    {
      device,
      runId: request.runId,
      round: request.round,
      cut: request.cut,
      index: batch,
      hidden,
      mask: enc.attentionMask,
      labels: enc.labels,
      rows: enc.rows,
      seqLen: enc.seqLen,
      nEmbd: d,
      defence: canonicalDefence(defence.defence),
    },
    request.dtype,
  );
  output.dispose();
  return { bytes, rows: enc.rows, seqLen: enc.seqLen, tokens: enc.attentionMask.reduce((a, m) => a + m, 0), forwardMs };
}
