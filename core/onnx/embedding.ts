/**
 * The token-embedding table kept outside the ONNX session (prefix graphs exported with tokenEmbedding 'input'):
 * the device looks its tokens' rows up itself and feeds `inputs_embeds`. Stored as safetensors, int8 with a
 * per-row scale or float32, and read back by name.
 */
import { DTYPES } from '../tensors/dtype.ts';
import { HEADER_PREFIX_BYTES, headerLength, parseSafetensorsHeader, typedView } from '../tensors/safetensors.ts';
import type { Tensor } from '../tensors/tensor.ts';
import { familyOf, type Model, type ModelConfig } from '../model/family.ts';
import { requireParam } from '../model/params.ts';
import { quantizeInt8 } from './quantize.ts';
import type { PrefixWeights } from './prefix-context.ts';

export interface TokenTable {
  vocabSize: number;
  nEmbd: number;
  rows: Float32Array | Int8Array;
  /** Per-row scales of int8 rows. */
  scales?: Float32Array;
  /** For a table that holds only some tokens: token id -> row. */
  index?: Map<number, number>;
}

function rowOf(table: TokenTable, id: number, what: string): number {
  const row = table.index ? table.index.get(id) : id >= 0 && id < table.vocabSize ? id : undefined;
  if (row === undefined) {
    throw new RangeError(
      `${what} = ${id} is ${table.index && id >= 0 && id < table.vocabSize ? 'not among the rows this table holds' : `outside the vocabulary [0, ${table.vocabSize})`}`,
    );
  }
  return row;
}

/** The model's token-embedding parameter (the file format below names it wte.weight for every family). */
export function tokenTableName(c: ModelConfig): string {
  return familyOf(c).tokenTable;
}

export function tokenTable(model: Model, weights: PrefixWeights): TokenTable {
  const { vocabSize, nEmbd } = model.config;
  const wte = requireParam(model.params, tokenTableName(model.config));
  if (weights === 'fp32') return { vocabSize, nEmbd, rows: wte };
  const q = quantizeInt8(wte, vocabSize, nEmbd, 'row');
  return { vocabSize, nEmbd, rows: q.values, scales: q.scales };
}

/** Rows of `ids` ([B, T], any integer array) as a float32 [B, T, d] array. */
export function lookupTokens(table: TokenTable, ids: ArrayLike<number | bigint>): Float32Array {
  const { nEmbd: d, rows, scales } = table;
  const out = new Float32Array(ids.length * d);
  for (let r = 0; r < ids.length; r++) {
    const row = rowOf(table, Number(ids[r]), `input_ids[${r}]`);
    const scale = scales ? scales[row] : 1;
    for (let i = 0; i < d; i++) out[r * d + i] = rows[row * d + i] * scale;
  }
  return out;
}

export function tokenTableTensors(t: TokenTable): Record<string, Tensor> {
  const shape = [t.vocabSize, t.nEmbd];
  if (!t.scales) return { 'wte.weight': { dtype: 'F32', shape, data: t.rows } };
  return {
    'wte.weight_int8': { dtype: 'I8', shape, data: t.rows },
    'wte.weight_scale': { dtype: 'F32', shape: [t.vocabSize], data: t.scales },
  };
}

export function tokenTableFromTensors(tensors: Map<string, Tensor>, file = 'token table'): TokenTable {
  const fp32 = tensors.get('wte.weight');
  const int8 = tensors.get('wte.weight_int8');
  const table = fp32 ?? int8;
  if (!table || table.shape.length !== 2) throw new Error(`${file}: needs 'wte.weight' (F32) or 'wte.weight_int8' (I8) of shape [vocab, d]`);
  const [vocabSize, nEmbd] = table.shape;
  if (fp32) return { vocabSize, nEmbd, rows: fp32.data as Float32Array };
  const scales = tensors.get('wte.weight_scale');
  if (!scales || scales.shape[0] !== vocabSize) throw new Error(`${file}: tensor 'wte.weight_scale' must hold ${vocabSize} per-row scales`);
  return { vocabSize, nEmbd, rows: int8!.data as Int8Array, scales: scales.data as Float32Array };
}

/** Reads bytes [offset, offset + length) of a file: an HTTP Range GET, a file-handle read. */
export type ReadRange = (offset: number, length: number) => Promise<Uint8Array>;

/**
 * Reads only the rows of `ids` from a token-table safetensors file of `fileLength` bytes, in few range reads
 * (ids closer than `maxGap` rows share one read), each at a higher offset than the last, so `read` may also be a
 * single pass over a stream. A device holds the vocabulary its shard uses, not 50,257 rows.
 */
export async function readTokenRows(
  read: ReadRange,
  fileLength: number,
  ids: Iterable<number | bigint>,
  file = 'token table',
  maxGap = 32,
): Promise<TokenTable> {
  const prefix = await read(0, HEADER_PREFIX_BYTES);
  const headerBytes = new Uint8Array(HEADER_PREFIX_BYTES + headerLength(prefix, file));
  headerBytes.set(prefix);
  headerBytes.set(await read(HEADER_PREFIX_BYTES, headerBytes.length - HEADER_PREFIX_BYTES), HEADER_PREFIX_BYTES);
  const { entries, dataStart } = parseSafetensorsHeader(headerBytes, fileLength, file);
  const entry = (name: string) => entries.find((e) => e.name === name);
  const table = entry('wte.weight') ?? entry('wte.weight_int8');
  if (!table || table.shape.length !== 2) throw new Error(`${file}: needs 'wte.weight' (F32) or 'wte.weight_int8' (I8) of shape [vocab, d]`);
  const [vocabSize, nEmbd] = table.shape;
  const rowBytes = nEmbd * DTYPES[table.dtype].bytes;
  const scaleEntry = entry('wte.weight_scale');
  if (table.dtype === 'I8' && scaleEntry?.shape[0] !== vocabSize) throw new Error(`${file}: tensor 'wte.weight_scale' must hold ${vocabSize} per-row scales`);

  const readScales = async () => typedView(await read(dataStart + scaleEntry!.begin, vocabSize * 4), 0, 'F32', vocabSize) as Float32Array;
  const scalesFirst = table.dtype === 'I8' && scaleEntry!.begin < table.begin ? await readScales() : undefined;
  const wanted = [...new Set(Array.from(ids, Number))].sort((a, b) => a - b);
  for (const id of wanted) {
    if (!(Number.isInteger(id) && id >= 0 && id < vocabSize)) throw new RangeError(`token id ${id} is outside the vocabulary [0, ${vocabSize})`);
  }
  const rows = table.dtype === 'I8' ? new Int8Array(wanted.length * nEmbd) : new Float32Array(wanted.length * nEmbd);
  const index = new Map<number, number>();
  for (let i = 0; i < wanted.length;) {
    let j = i;
    while (j + 1 < wanted.length && wanted[j + 1] - wanted[j] <= maxGap) j++;
    const [first, last] = [wanted[i], wanted[j]];
    const bytes = await read(dataStart + table.begin + first * rowBytes, (last - first + 1) * rowBytes);
    const block = typedView(bytes, 0, table.dtype, (last - first + 1) * nEmbd);
    for (; i <= j; i++) {
      index.set(wanted[i], i);
      rows.set((block as Float32Array | Int8Array).subarray((wanted[i] - first) * nEmbd, (wanted[i] - first + 1) * nEmbd), i * nEmbd);
    }
  }
  let scales: Float32Array | undefined;
  if (table.dtype === 'I8') {
    const all = scalesFirst ?? (await readScales());
    scales = Float32Array.from(wanted, (id) => all[id]);
  }
  return { vocabSize, nEmbd, rows, scales, index };
}

/**
 * The rows of `ids` from a token-table file read in one pass over its whole stream: every byte is read whatever the
 * ids, so whoever serves the file learns nothing about them (a device's shard). `onChunk` sees every chunk in order
 * (a digest, to verify the file). Only the rows of `ids` are kept.
 */
export async function streamTokenRows(
  stream: ReadableStream<Uint8Array>,
  fileLength: number,
  ids: Iterable<number | bigint>,
  file = 'token table',
  onChunk: (chunk: Uint8Array) => unknown = () => {},
): Promise<TokenTable> {
  const reader = stream.getReader();
  let position = 0;
  let pending: Uint8Array = new Uint8Array(0);
  const next = async () => {
    const { done, value } = await reader.read();
    if (done) return undefined;
    await onChunk(value);
    return value;
  };
  // Reads go forward (readTokenRows promises it): bytes before `offset` pass by and are dropped.
  const read: ReadRange = async (offset, length) => {
    if (offset < position) throw new Error(`${file}: read at ${offset} after ${position} (reads must go forward)`);
    const out = new Uint8Array(length);
    let filled = 0;
    while (filled < length) {
      if (pending.byteLength === 0) {
        const chunk = await next();
        if (!chunk) throw new Error(`${file}: ended at byte ${position}, ${fileLength} expected`);
        pending = chunk;
      }
      const skip = Math.min(offset + filled - position, pending.byteLength);
      const take = Math.min(length - filled, pending.byteLength - skip);
      out.set(pending.subarray(skip, skip + take), filled);
      filled += take;
      position += skip + take;
      pending = pending.subarray(skip + take);
    }
    return out;
  };
  const rows = await readTokenRows(read, fileLength, ids, file);
  while (await next());
  return rows;
}
