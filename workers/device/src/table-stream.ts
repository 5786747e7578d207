/**
 * A token table read as a device reads it, so that nothing storage or the server can see depends on the shard's
 * tokens unless the table is the approved one: every byte of the body goes through the digest, whatever the bytes;
 * the memory kept for the shard's rows is sized by its ids and the segment alone, never by what the header says; the
 * rows are taken from each chunk as it passes, reading on whatever they are; and what went wrong is told only once
 * the digest is known, so that a table other than the approved one fails as a hash mismatch alone. Pure (the digest
 * is given: crypto.DigestStream in the Worker), so that it is tested as it is, outside workerd.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import type { TokenTable } from '../../../core/onnx/embedding.ts';
import { concatBytes, headerLength, HEADER_PREFIX_BYTES, parseSafetensorsHeader } from '../../../core/tensors/safetensors.ts';
import { checkTableHeader, type TableLayout, type TableShape } from './segment-check.ts';

/** A token table's header is a few hundred bytes; one far longer is not the approved table's, and is not held. */
const MAX_TABLE_HEADER_BYTES = 64 * 1024;

export interface Digest {
  update(chunk: Uint8Array): Promise<unknown> | void;
  /** The hex SHA-256 of every chunk given, once all are. */
  hex(): Promise<string>;
}

/** A Digest in plain JS (@noble/hashes), for where no DigestStream runs: Node's tests and benchmarks. */
export function sha256Digest(): Digest {
  const hash = sha256.create();
  return { update: (chunk) => void hash.update(chunk), hex: async () => bytesToHex(hash.digest()) };
}

/** What was read: the body's digest, and the rows, or what is wrong (to tell only if the digest is the approved one). */
export type ReadTable = { sha256: string } & ({ rows: TokenTable } | { problem: string });

/**
 * Reads a table body of `size` bytes (its content-length) for the rows of `ids`, the table fitting `shape`. Never
 * throws but for the body's own stream failing (a network error, which no token decides), or for room for the rows
 * that cannot be had (sized by the shard and the approved segment, before any byte is read).
 */
export async function readTable(body: ReadableStream<Uint8Array>, size: number, ids: Iterable<number>, shape: TableShape, digest: Digest): Promise<ReadTable> {
  const source = body.getReader();
  let read = 0;
  let longer = false;
  /** The body's next chunk, through the digest; a body past `size` ends there (it is not the approved table). */
  const pull = async (): Promise<Uint8Array | undefined> => {
    if (longer) return undefined;
    const { done, value } = await source.read();
    if (done) return undefined;
    read += value.byteLength;
    await digest.update(value);
    if (read > size) {
      longer = true;
      await source.cancel();
    }
    return value;
  };
  const held: Uint8Array[] = [];
  const header = await readHeader(pull, held, size, shape);
  const wanted = [...new Set(Array.from(ids, Number))].sort((a, b) => a - b);
  const rows = shardRows(wanted, shape, 'vocab' in header ? header : undefined);
  let at = 0;
  for (let chunk = held.shift() ?? (await pull()); chunk; chunk = held.shift() ?? (await pull())) {
    rows.take(chunk, at);
    at += chunk.byteLength;
  }
  const sha256 = await digest.hex();
  const problem =
    read !== size
      ? longer
        ? `the body runs past its content-length of ${size} bytes`
        : `the body holds ${read} bytes, its content-length says ${size}`
      : 'problem' in header
        ? header.problem
        : wanted.some((id) => !inVocabulary(id, header.vocab))
          ? "a token id of the shard is outside the table's vocabulary"
          : undefined;
  return problem === undefined ? { sha256, rows: rows.table } : { sha256, problem };
}

/**
 * Room for the rows (and int8 scales) of every id wanted, allocated before a byte of rows is read and sized by the
 * ids and the segment's shape alone; `take` copies from a chunk at file offset `at` whatever part of a wanted row or
 * scale it holds. Without a layout (a header refused), nothing is taken.
 */
export function shardRows(wanted: number[], shape: TableShape, layout: TableLayout | undefined) {
  const rowBytes = shape.nEmbd * (shape.dtype === 'I8' ? 1 : 4);
  const rowData = new ArrayBuffer(wanted.length * rowBytes);
  const scaleData = new ArrayBuffer(shape.dtype === 'I8' ? wanted.length * 4 : 0);
  // Each wanted id: where its row and scale lie in the file, and where they go; in file order. An id past the
  // vocabulary (or every id, without a layout) gets its pieces all the same, placed where no chunk reaches, so that
  // nothing made here depends on how many ids the header's vocabulary holds.
  const pieces: Array<{ from: number; length: number; into: Uint8Array }> = [];
  const index = new Map<number, number>();
  const nowhere = Number.MAX_SAFE_INTEGER;
  wanted.forEach((id, i) => {
    const held = layout !== undefined && inVocabulary(id, layout.vocab);
    index.set(id, i);
    pieces.push({ from: held ? layout.rowsAt + id * rowBytes : nowhere, length: rowBytes, into: new Uint8Array(rowData, i * rowBytes, rowBytes) });
    if (shape.dtype === 'I8')
      pieces.push({ from: held && layout.scalesAt !== undefined ? layout.scalesAt + id * 4 : nowhere, length: 4, into: new Uint8Array(scaleData, i * 4, 4) });
  });
  pieces.sort((a, b) => a.from - b.from);
  let next = 0;
  return {
    take(chunk: Uint8Array, at: number) {
      const end = at + chunk.byteLength;
      for (; next < pieces.length && pieces[next].from < end; next++) {
        const { from, length, into } = pieces[next];
        const start = Math.max(from, at);
        into.set(chunk.subarray(start - at, Math.min(from + length, end) - at), start - from);
        if (from + length > end) break; // the rest of this piece is in the next chunk
      }
    },
    table: {
      vocabSize: layout?.vocab ?? 0,
      nEmbd: shape.nEmbd,
      rows: shape.dtype === 'I8' ? new Int8Array(rowData) : new Float32Array(rowData),
      ...(shape.dtype === 'I8' ? { scales: new Float32Array(scaleData) } : {}),
      index,
    } satisfies TokenTable,
  };
}

const inVocabulary = (id: number, vocab: number) => Number.isInteger(id) && id >= 0 && id < vocab;

/** Reads the header's chunks into `held` (via `pull`) and checks the header against the segment. */
async function readHeader(pull: () => Promise<Uint8Array | undefined>, held: Uint8Array[], size: number, shape: TableShape) {
  let heldBytes = 0;
  const hold = async (n: number) => {
    while (heldBytes < n) {
      const chunk = await pull();
      if (!chunk) return false;
      held.push(chunk);
      heldBytes += chunk.byteLength;
    }
    return true;
  };
  try {
    if (!(await hold(HEADER_PREFIX_BYTES))) return { problem: 'shorter than a safetensors header' };
    const length = headerLength(concatBytes(held), 'token table');
    if (length > MAX_TABLE_HEADER_BYTES) return { problem: `a header of ${length} bytes, more than a table's needs (${MAX_TABLE_HEADER_BYTES})` };
    if (!(await hold(HEADER_PREFIX_BYTES + length))) return { problem: 'shorter than its header says' };
    return checkTableHeader(parseSafetensorsHeader(concatBytes(held), size, 'token table'), size, shape);
  } catch (e) {
    return { problem: (e as Error).message };
  }
}
