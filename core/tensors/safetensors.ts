/**
 * The safetensors format (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length,
 * a JSON header {name: {dtype, shape, data_offsets}, __metadata__?: {string: string}}, then the raw data.
 * Every error names the file and, where there is one, the tensor.
 */
import { DTYPES, isDType, type DType, type TensorData } from './dtype.ts';
import { numel, type Tensor } from './tensor.ts';

export interface SafetensorsFile {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
}

/** Largest header we accept; the format itself caps it at 100 MB. */
const MAX_HEADER_BYTES = 100_000_000;

export class SafetensorsError extends Error {
  constructor(file: string, message: string, tensor?: string) {
    super(`${file}: ${tensor === undefined ? '' : `tensor '${tensor}': `}${message}`);
    this.name = 'SafetensorsError';
  }
}

/** Where one tensor lies in the file: bytes [dataStart + begin, dataStart + end). */
export interface TensorEntry {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  entries: TensorEntry[];
  metadata: Record<string, string>;
  /** Byte offset of the data section in the file. */
  dataStart: number;
}

/** Bytes to read before the header length is known. */
export const HEADER_PREFIX_BYTES = 8;

/** Length of the JSON header, from the file's first 8 bytes. */
export function headerLength(prefix: Uint8Array, file = 'safetensors'): number {
  if (prefix.byteLength < HEADER_PREFIX_BYTES) throw new SafetensorsError(file, `truncated: ${prefix.byteLength} bytes, a file needs at least 8`);
  const n = Number(new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true));
  if (n > MAX_HEADER_BYTES) throw new SafetensorsError(file, `corrupt header: header length ${n} exceeds ${MAX_HEADER_BYTES}`);
  return n;
}

/**
 * Parses and checks the header. `bytes` holds at least the first 8 + header-length bytes of a file of `fileLength`
 * bytes, so a reader that fetches byte ranges (HTTP Range, a file handle) can locate tensors without the data.
 */
export function parseSafetensorsHeader(bytes: Uint8Array, fileLength = bytes.byteLength, file = 'safetensors'): SafetensorsHeader {
  const fail = (message: string, tensor?: string): never => {
    throw new SafetensorsError(file, message, tensor);
  };
  const length = headerLength(bytes, file);
  if (8 + length > fileLength) fail(`truncated: header of ${length} bytes does not fit in ${fileLength} bytes`);
  if (8 + length > bytes.byteLength) fail(`only ${bytes.byteLength} bytes given, the header needs ${8 + length}`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes.subarray(8, 8 + length)));
  } catch (e) {
    fail(`corrupt header: not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('corrupt header: not a JSON object');

  const dataStart = 8 + length;
  const dataLength = fileLength - dataStart;
  const entries: TensorEntry[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null || Object.values(entry).some((v) => typeof v !== 'string')) {
        fail('corrupt header: __metadata__ must map strings to strings');
      }
      metadata = entry as Record<string, string>;
      continue;
    }
    const { dtype, shape, data_offsets: offsets } = (entry ?? {}) as Record<string, unknown>;
    if (typeof dtype !== 'string' || !isDType(dtype)) fail(`unsupported or missing dtype ${JSON.stringify(dtype)}`, name);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`corrupt header: shape ${JSON.stringify(shape)} is not a list of non-negative integers`, name);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]) {
      fail(`corrupt header: data_offsets ${JSON.stringify(offsets)} is not [begin, end]`, name);
    }
    const [begin, end] = offsets as [number, number];
    const e: TensorEntry = { name, dtype: dtype as DType, shape: shape as number[], begin, end };
    const expected = numel(e.shape) * DTYPES[e.dtype].bytes;
    if (end - begin !== expected) {
      fail(`data_offsets span ${end - begin} bytes but ${e.dtype}${JSON.stringify(e.shape)} needs ${expected}`, name);
    }
    if (end > dataLength) fail(`truncated: data ends at byte ${end} but the file holds ${dataLength} data bytes`, name);
    entries.push(e);
  }
  const spans = [...entries].sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i].begin < spans[i - 1].end) fail(`corrupt header: data overlaps tensor '${spans[i - 1].name}'`, spans[i].name);
  }
  return { entries, metadata, dataStart };
}

/** Parses a whole safetensors file. `file` is only used to name the file in errors. */
export function parseSafetensors(bytes: Uint8Array, file = 'safetensors'): SafetensorsFile {
  const { entries, metadata, dataStart } = parseSafetensorsHeader(bytes, bytes.byteLength, file);
  const tensors = new Map<string, Tensor>();
  for (const { name, dtype, shape, begin } of entries) {
    tensors.set(name, { dtype, shape, data: typedView(bytes, dataStart + begin, dtype, numel(shape)) });
  }
  return { tensors, metadata };
}

/** A typed view on the bytes where they are aligned, else an aligned copy. */
export function typedView(bytes: Uint8Array, offset: number, dtype: DType, length: number) {
  const { bytes: size, make } = DTYPES[dtype];
  const at = bytes.byteOffset + offset;
  if (at % size === 0) return make(bytes.buffer, at, length);
  const copy = bytes.slice(offset, offset + length * size);
  return make(copy.buffer, 0, length);
}

/** A tensor to write: its dtype and shape now, its data when the writer reaches it (converted then, one at a time). */
export interface PendingTensor {
  dtype: DType;
  shape: number[];
  data(): TensorData;
}

/** The bytes of a safetensors file a piece at a time: the header, then each tensor's data, made as it is reached. */
export function* safetensorsChunks(tensors: ReadonlyArray<readonly [string, PendingTensor]>, metadata?: Record<string, string>): Generator<Uint8Array> {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of tensors) {
    const size = numel(t.shape) * DTYPES[t.dtype].bytes;
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  // Pad the header with spaces so the data starts 8-byte aligned, as the reference implementation does.
  const start = new Uint8Array(8 + Math.ceil(json.byteLength / 8) * 8).fill(0x20);
  new DataView(start.buffer).setBigUint64(0, BigInt(start.byteLength - 8), true);
  start.set(json, 8);
  yield start;
  for (const [name, t] of tensors) {
    const data = t.data();
    const size = numel(t.shape) * DTYPES[t.dtype].bytes;
    if (data.byteLength !== size)
      throw new SafetensorsError('serialize', `holds ${data.byteLength} bytes but ${t.dtype}${JSON.stringify(t.shape)} needs ${size}`, name);
    yield new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
}

/** Serialises tensors (in the given order) into safetensors bytes. */
export function serializeSafetensors(tensors: Map<string, Tensor> | Record<string, Tensor>, metadata?: Record<string, string>): Uint8Array {
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  return concatBytes(
    safetensorsChunks(
      entries.map(([name, t]) => [name, { dtype: t.dtype, shape: t.shape, data: () => t.data }] as const),
      metadata,
    ),
  );
}

/** Pieces of bytes as one array. */
export function concatBytes(chunks: Iterable<Uint8Array>): Uint8Array {
  const all = [...chunks];
  const out = new Uint8Array(all.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  for (const c of all) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}
