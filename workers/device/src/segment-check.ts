/**
 * What the device checks of a segment's graph and of its token table's header before either meets the owner's text.
 * Pure (no bindings), so that it is tested as it is, outside workerd.
 */
import { onnx } from '../../../core/onnx/graph.ts';
import type { SafetensorsHeader } from '../../../core/tensors/safetensors.ts';

/**
 * Operators that quantize activations with one scale over the whole batch: a row's values then depend on the other
 * rows, the padding and the length, while its defence's noise does not, so two copies of a row differ by an amount
 * free of noise (docs/SECURITY.md). Segments exported before 2026-12-07 used them; an owner may have approved one.
 */
const WHOLE_BATCH_QUANTIZERS = new Set(['DynamicQuantizeMatMul', 'DynamicQuantizeLinear']);

/** The widest rows a segment may take: past any model in use (Llama-3.2-1B's are 2,048 wide). */
const MAX_WIDTH = 1 << 16;

/** The most tokens a table may list: well past any vocabulary in use (Llama 3 has 128,256); a header claiming more is no model's. */
export const MAX_TABLE_VOCAB = 1 << 21;

/** What a segment's graph says of the token table it takes: the width of its rows and their dtype. */
export interface TableShape {
  nEmbd: number;
  /** I8 for an int8 segment, F32 for an fp32 one. */
  dtype: 'I8' | 'F32';
}

/** A segment's graph, read: why the device refuses to run it, or the token table it takes. */
export function inspectSegment(bytes: Uint8Array): { refusal: string } | { table: TableShape | undefined } {
  let model: ReturnType<typeof onnx.ModelProto.decode>;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (e) {
    return { refusal: `model segment: not an ONNX model (${(e as Error).message})` };
  }
  const quantizer = model.graph?.node?.find((n) => WHOLE_BATCH_QUANTIZERS.has(n.opType ?? ''))?.opType;
  if (quantizer)
    return {
      refusal: `model segment: it quantizes activations with one scale over the whole batch (${quantizer}), so a row's values would depend on the rest of the batch under its noise; its owner approves a segment exported again (export-prefix quantizes each position on its own) and deletes this approval`,
    };
  const embeds = model.graph?.input?.find((i) => i.name === 'inputs_embeds');
  if (!embeds) return { table: undefined };
  const width = Number(embeds.type?.tensorType?.shape?.dim?.[2]?.dimValue ?? 0);
  if (!Number.isSafeInteger(width) || width <= 0 || width > MAX_WIDTH)
    return { refusal: `model segment: input 'inputs_embeds' has no fixed width [batch, sequence, d] of at most ${MAX_WIDTH}` };
  // The dtype of its table's rows sizes what the device keeps of them: a graph that does not say is not run.
  const weights = model.metadataProps?.find((p) => p.key === 'weights')?.value;
  if (weights !== 'int8' && weights !== 'fp32')
    return { refusal: "model segment: its metadata does not say its 'weights' (int8 or fp32), which fixes its token table's dtype" };
  return { table: { nEmbd: width, dtype: weights === 'int8' ? 'I8' : 'F32' } };
}

/**
 * A token table's header checked against the segment that takes rows of `shape`: where its rows lie, or why it
 * cannot be that segment's table. The header decides where the shard's rows are read from and which of its ids are
 * in range, and what a forged one makes of them must not depend on the shard's tokens: so the file holds exactly
 * a table as tokenTableTensors writes it (`wte.weight` F32, or `wte.weight_int8` I8 with `wte.weight_scale` F32
 * [vocab]; no second table for the reader to prefer), of the segment's width and dtype, a bounded vocabulary, and
 * data that ends where the file does.
 */
export function checkTableHeader(header: SafetensorsHeader, fileLength: number, shape: TableShape): TableLayout | { problem: string } {
  const names = header.entries.map((e) => e.name).sort();
  const table = header.entries.find((e) => e.name === 'wte.weight' || e.name === 'wte.weight_int8');
  const layout = table?.name === 'wte.weight' ? ['wte.weight'] : ['wte.weight_int8', 'wte.weight_scale'];
  if (!table || table.shape.length !== 2 || names.join() !== layout.join())
    return { problem: `tensors ${names.join(', ')}: a table is 'wte.weight' [vocab, d], or 'wte.weight_int8' [vocab, d] with 'wte.weight_scale' [vocab]` };
  const [vocab, width] = table.shape;
  if (width !== shape.nEmbd) return { problem: `rows of width ${width}, the segment's are ${shape.nEmbd}` };
  const dtype = table.name === 'wte.weight' ? 'F32' : 'I8';
  if (table.dtype !== dtype || dtype !== shape.dtype) return { problem: `a ${table.dtype} table, the segment takes ${shape.dtype}` };
  const scale = header.entries.find((e) => e.name === 'wte.weight_scale');
  if (scale && (scale.dtype !== 'F32' || scale.shape.join() !== String(vocab))) return { problem: `'wte.weight_scale' is not F32 [${vocab}]` };
  if (vocab > MAX_TABLE_VOCAB) return { problem: `${vocab} tokens, more than ${MAX_TABLE_VOCAB}` };
  const end = header.dataStart + Math.max(0, ...header.entries.map((e) => e.end));
  if (end !== fileLength) return { problem: `its tensors end at byte ${end}, the file at ${fileLength}` };
  return { vocab, rowsAt: header.dataStart + table.begin, ...(scale ? { scalesAt: header.dataStart + scale.begin } : {}) };
}

/** Where a checked table's rows lie in its file: its vocabulary, and the file offsets of its rows and int8 scales. */
export interface TableLayout {
  vocab: number;
  rowsAt: number;
  scalesAt?: number;
}
