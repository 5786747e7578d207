/**
 * onnxruntime-web (WASM, 1 thread) inside workerd. Workers may not compile WebAssembly from bytes, so the runtime's
 * .wasm is imported precompiled (wrangler's CompiledWasm rule) and handed to the Emscripten loader in place of the
 * bytes it would otherwise instantiate. Sessions are cached per graph and weights SHA-256 for the life of the isolate.
 */
import * as ort from 'onnxruntime-web/wasm';
import ortWasm from '../../../node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm';
import { hex, sha256Hex } from '../../../core/auth/signing.ts';
import { streamTokenRows, type TokenTable } from '../../../core/onnx/embedding.ts';
import { PREFIX_DATA_LOCATION } from '../../../core/onnx/prefix.ts';
import { concatBytes, headerLength, HEADER_PREFIX_BYTES, parseSafetensorsHeader } from '../../../core/tensors/safetensors.ts';
import { inspectSegment, tableHeaderProblem, type TableShape } from './segment-check.ts';
import { RoundError } from './errors.ts';
import { storageFetch } from './storage.ts';

let configured = false;
// onnxruntime's WebAssembly memories, imported or exported: the one figure of its own memory a Worker can read.
const memories = new Set<WebAssembly.Memory>();

/** Bytes of WebAssembly memory onnxruntime holds; linear memory never shrinks, so this is also its peak. */
export function wasmMemoryBytes(): number {
  let bytes = 0;
  for (const m of memories) bytes += m.buffer.byteLength;
  return bytes;
}

function configure(): void {
  if (configured) return;
  configured = true;
  const instantiate = WebAssembly.instantiate.bind(WebAssembly);
  WebAssembly.instantiate = (async (source: BufferSource | WebAssembly.Module, imports?: WebAssembly.Imports) => {
    const instance = await instantiate(source instanceof WebAssembly.Module ? source : ortWasm, imports);
    for (const o of [...Object.values(imports ?? {}), instance.exports]) for (const v of Object.values(o)) if (v instanceof WebAssembly.Memory) memories.add(v);
    return source instanceof WebAssembly.Module ? instance : { instance, module: ortWasm };
  }) as typeof WebAssembly.instantiate;
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  // Any bytes: ORT then skips fetching its .wasm, and the instantiate above supplies the real module.
  ort.env.wasm.wasmBinary = new Uint8Array(8);
}

export class ModelHashMismatch extends RoundError {}

const sessions = new Map<string, Promise<ort.InferenceSession>>();

/**
 * The session for a model, fetched from `url` and checked against `sha256` on first use; with `weights`, its
 * external data too (fetched and checked the same way, handed to the session, then let go). Keyed by both: one
 * graph runs with whichever weights the round names. (The token table is not in the session: each round reads its own.)
 */
export function session(sha256: string, url: string, weights?: { sha256: string; url: string }): Promise<ort.InferenceSession> {
  const key = `${sha256}+${weights?.sha256 ?? 'in-graph'}`;
  let s = sessions.get(key);
  if (!s) {
    s = load(sha256, url, weights);
    sessions.set(key, s);
    s.catch(() => sessions.delete(key));
  }
  return s;
}

async function fetchVerified(what: string, field: string, url: string, sha256: string): Promise<Uint8Array> {
  const res = await storageFetch(field, url);
  if (!res.ok) throw new RoundError(`${what} GET failed: HTTP ${res.status}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  const actual = await sha256Hex(bytes);
  if (actual !== sha256) throw new ModelHashMismatch(`${what} hash mismatch: expected ${sha256}, got ${actual}`);
  return bytes;
}

/** The token table each session's graph takes (inputs_embeds), as its graph says. */
const tableShapes = new WeakMap<ort.InferenceSession, TableShape>();

/** The width and dtype of the token table rows `model` takes; a graph that takes token ids takes none. */
export function tableShape(model: ort.InferenceSession): TableShape | undefined {
  return tableShapes.get(model);
}

async function load(sha256: string, url: string, weights?: { sha256: string; url: string }): Promise<ort.InferenceSession> {
  configure();
  const bytes = await fetchVerified('model segment', 'model.url', url, sha256);
  const inspected = inspectSegment(bytes);
  if ('refusal' in inspected) throw new RoundError(inspected.refusal);
  const externalData = weights
    ? [{ path: PREFIX_DATA_LOCATION, data: await fetchVerified('segment weights', 'weights.url', weights.url, weights.sha256) }]
    : undefined;
  // Errors only: onnxruntime's optimizer notes are not the device owner's concern.
  const model = await ort.InferenceSession.create(bytes, { logSeverityLevel: 3, ...(externalData ? { externalData } : {}) });
  if (inspected.table) tableShapes.set(model, inspected.table);
  return model;
}

export { ort };

/** A token table's header is a few hundred bytes; one far longer is not the approved table's, and is not held. */
const MAX_TABLE_HEADER_BYTES = 64 * 1024;

/**
 * The rows of `ids` from a token table, read so that what storage sees does not depend on them: the whole table is
 * streamed once, through a digest, and only the rows of `ids` are kept as they pass. The rows are returned only
 * if the table's SHA-256 matches. (Reading rows by byte range would tell storage which tokens the shard holds.)
 * Whatever the table's bytes, the device reads all of them, and a table other than the approved one fails as a hash
 * mismatch alone: nothing it does before the hash is known may depend on the shard's tokens, so a header must fit
 * the segment (`shape`: the width and dtype of its rows) before any row is looked for, since the header sizes what
 * is allocated for them and decides which ids it holds.
 */
export async function shardTokenTable(table: { sha256: string; url: string }, ids: Iterable<number>, shape: TableShape): Promise<TokenTable> {
  const res = await storageFetch('tokenTable.url', table.url);
  if (!res.ok || !res.body) throw new RoundError(`token table GET failed: HTTP ${res.status}`);
  const size = Number(res.headers.get('content-length'));
  if (!Number.isSafeInteger(size) || size <= 0) throw new RoundError('token table GET: no content-length');
  const digest = new crypto.DigestStream('SHA-256');
  const writer = digest.getWriter();
  const source = res.body.getReader();
  let read = 0;
  const nextChunk = async () => {
    const { done, value } = await source.read();
    if (done) return undefined;
    read += value.byteLength;
    if (read > size) throw new RoundError(`token table GET: more than its content-length of ${size} bytes`);
    await writer.write(value);
    return value;
  };
  const held: Uint8Array[] = [];
  const headerProblem = await checkedHeader(nextChunk, held, size, shape);
  // The chunks held for the header, then the rest, each pulled only when asked for.
  const through = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const chunk = held.shift() ?? (await nextChunk());
        if (chunk) controller.enqueue(chunk);
        else controller.close();
      },
    },
    { highWaterMark: 0 },
  );
  const rows = headerProblem
    ? new RoundError(`token table: ${headerProblem}`)
    : await streamTokenRows(through, size, ids, 'token table').catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
  if (rows instanceof Error) while (await nextChunk());
  await writer.close();
  const actual = hex(await digest.digest);
  if (actual !== table.sha256) throw new ModelHashMismatch(`token table hash mismatch: expected ${table.sha256}, got ${actual}`);
  if (rows instanceof Error) throw rows;
  return rows;
}

/** Reads the table's header into `held` and says what is wrong with it for the segment, if anything. */
async function checkedHeader(
  nextChunk: () => Promise<Uint8Array | undefined>,
  held: Uint8Array[],
  size: number,
  shape: TableShape,
): Promise<string | undefined> {
  let heldBytes = 0;
  const hold = async (n: number) => {
    while (heldBytes < n) {
      const chunk = await nextChunk();
      if (!chunk) return false;
      held.push(chunk);
      heldBytes += chunk.byteLength;
    }
    return true;
  };
  try {
    if (!(await hold(HEADER_PREFIX_BYTES))) return 'shorter than a safetensors header';
    const length = headerLength(concatBytes(held), 'token table');
    if (length > MAX_TABLE_HEADER_BYTES) return `a header of ${length} bytes, more than a table's needs (${MAX_TABLE_HEADER_BYTES})`;
    if (!(await hold(HEADER_PREFIX_BYTES + length))) return 'shorter than its header says';
    return tableHeaderProblem(parseSafetensorsHeader(concatBytes(held), size, 'token table'), size, shape);
  } catch (e) {
    if (e instanceof RoundError) throw e;
    return (e as Error).message;
  }
}
