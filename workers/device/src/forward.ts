/** One batch on the device: tokenize its rows, run the frozen prefix, and encode the activations for upload. */
import { textInput, type Example } from '../../../core/data/shard.ts';
import { PREFIX_OUTPUT } from '../../../core/onnx/prefix.ts';
import { GPT2Tokenizer } from '../../../core/tokenizer/gpt2.ts';
import { encodeActivationBatch } from '../../../core/wire/activations.ts';
import type { RoundRequest } from '../../../core/wire/round.ts';
import { lookupTokens, type TokenTable } from '../../../core/onnx/embedding.ts';
import { ort } from './onnx.ts';

const tokenizer = new GPT2Tokenizer();

/** The rows as the round tokenizes them. */
export function encodeRows(rows: readonly Example[], request: Omit<RoundRequest, 'uploads'>) {
  return tokenizer.encodeBatch(rows.map(textInput), {
    maxLength: request.seqLen,
    padTokenId: request.padTokenId,
  });
}

/** `table`: the shard's token rows, for a segment that takes inputs_embeds. */
export async function forwardBatch(
  session: ort.InferenceSession,
  rows: readonly Example[],
  request: Omit<RoundRequest, 'uploads'>,
  device: string,
  batch: number,
  table: TokenTable | undefined,
): Promise<{ bytes: Uint8Array; rows: number; seqLen: number; tokens: number; forwardMs: number }> {
  const enc = encodeRows(rows, request);
  const shape = [enc.batch, enc.seq];
  const feeds: Record<string, ort.Tensor> = { attention_mask: new ort.Tensor('int64', BigInt64Array.from(enc.attentionMask, BigInt), shape) };
  if (session.inputNames.includes('inputs_embeds')) {
    if (!table) throw new Error('the model segment takes inputs_embeds: the round request needs a tokenTable');
    feeds.inputs_embeds = new ort.Tensor('float32', lookupTokens(table, enc.ids), [...shape, table.nEmbd]);
  } else {
    feeds.input_ids = new ort.Tensor('int64', BigInt64Array.from(enc.ids, BigInt), shape);
  }
  const started = performance.now();
  const out = await session.run(feeds);
  const forwardMs = performance.now() - started;
  const hidden = out[PREFIX_OUTPUT];
  const bytes = encodeActivationBatch(
    {
      device,
      runId: request.runId,
      round: request.round,
      cut: request.cut,
      batch,
      hidden: hidden.data as Float32Array,
      mask: enc.attentionMask,
      labels: Int32Array.from(rows, (r) => r.label),
      rows: enc.batch,
      seqLen: enc.seq,
      nEmbd: hidden.dims[2],
    },
    request.dtype,
  );
  hidden.dispose();
  return { bytes, rows: enc.batch, seqLen: enc.seq, tokens: enc.attentionMask.reduce((a, m) => a + m, 0), forwardMs };
}
