/**
 * A token table read as a device reads it, so that nothing storage or the server can see depends on the shard's
 * tokens: every byte of the body goes through the digest, whatever the bytes; the rows of the shard's ids are taken
 * as they pass, along one path whatever the ids; and what went wrong is only told once the digest is known, so that
 * a table other than the approved one fails as a hash mismatch alone. Pure (the digest is given: crypto.DigestStream
 * in the Worker), so that it is tested as it is, outside workerd.
 */
import { streamTokenRows, type TokenTable } from '../../../core/onnx/embedding.ts';
import { concatBytes, headerLength, HEADER_PREFIX_BYTES, parseSafetensorsHeader } from '../../../core/tensors/safetensors.ts';
import { checkTableHeader, type TableShape } from './segment-check.ts';

/** A token table's header is a few hundred bytes; one far longer is not the approved table's, and is not held. */
const MAX_TABLE_HEADER_BYTES = 64 * 1024;

export interface Digest {
  update(chunk: Uint8Array): Promise<unknown> | void;
  /** The hex SHA-256 of every chunk given, once all are. */
  hex(): Promise<string>;
}

/** What was read: the body's digest, and the rows, or what is wrong (to tell only if the digest is the approved one). */
export type ReadTable = { sha256: string } & ({ rows: TokenTable } | { problem: string });

/**
 * Reads a table body of `size` bytes (its content-length) for the rows of `ids`, the table fitting `shape`. Never
 * throws but for the body's own stream failing (a network error, which no token decides).
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
  let served = 0;
  // What the rows' reader sees: the header's chunks, the rest of the body, then zeros up to `size` should the body
  // end early, so that it never fails at a point that depends on which rows it was after.
  const stream = () =>
    new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          const chunk = held.shift() ?? (await pull()) ?? (served < size ? new Uint8Array(Math.min(size - served, 1 << 16)) : undefined);
          if (!chunk) return controller.close();
          served += chunk.byteLength;
          controller.enqueue(chunk);
        },
      },
      { highWaterMark: 0 },
    );
  const wanted = Array.from(ids, Number);
  let rows: TokenTable | Error | undefined;
  if ('vocab' in header) {
    const { vocab } = header;
    // Ids past the header's vocabulary are left out here, not refused by the reader, which would stop early.
    rows = await streamTokenRows(
      stream(),
      size,
      wanted.filter((id) => id < vocab),
      'token table',
    ).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
  }
  // The rest of the body, along the same path as the rows' reader takes it.
  for (const rest = stream().getReader(); !(await rest.read()).done;);
  const sha256 = await digest.hex();
  const problem =
    read !== size
      ? longer
        ? `the body runs past its content-length of ${size} bytes`
        : `the body holds ${read} bytes, its content-length says ${size}`
      : 'problem' in header
        ? header.problem
        : rows instanceof Error
          ? rows.message
          : wanted.some((id) => !(Number.isInteger(id) && id >= 0 && id < header.vocab))
            ? "a token id of the shard is outside the table's vocabulary"
            : undefined;
  // No problem: the header held a vocabulary, and its rows were read.
  return problem === undefined ? { sha256, rows: rows as TokenTable } : { sha256, problem };
}

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
