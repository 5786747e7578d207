/**
 * onnxruntime-web (WASM, 1 thread) inside workerd. Workers may not compile WebAssembly from bytes, so the runtime's
 * .wasm is imported precompiled (wrangler's CompiledWasm rule) and handed to the Emscripten loader in place of the
 * bytes it would otherwise instantiate. Sessions are cached per graph and weights SHA-256 for the life of the isolate.
 */
import * as ort from 'onnxruntime-web/wasm';
import ortWasm from '../../../node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm';
import { hex, sha256Hex } from '../../../core/auth/signing.ts';
import type { TokenTable } from '../../../core/onnx/embedding.ts';
import { PREFIX_DATA_LOCATION } from '../../../core/onnx/prefix.ts';
import { inspectSegment, type TableShape } from './segment-check.ts';
import { readTable } from './table-stream.ts';
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
export function session(origins: readonly string[], sha256: string, url: string, weights?: { sha256: string; url: string }): Promise<ort.InferenceSession> {
  const key = `${sha256}+${weights?.sha256 ?? 'in-graph'}`;
  let s = sessions.get(key);
  if (!s) {
    s = load(origins, sha256, url, weights);
    sessions.set(key, s);
    s.catch(() => sessions.delete(key));
  }
  return s;
}

async function fetchVerified(origins: readonly string[], what: string, field: string, url: string, sha256: string): Promise<Uint8Array> {
  const res = await storageFetch(origins, field, url);
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

async function load(origins: readonly string[], sha256: string, url: string, weights?: { sha256: string; url: string }): Promise<ort.InferenceSession> {
  configure();
  const bytes = await fetchVerified(origins, 'model segment', 'model.url', url, sha256);
  const inspected = inspectSegment(bytes);
  if ('refusal' in inspected) throw new RoundError(inspected.refusal);
  const externalData = weights
    ? [{ path: PREFIX_DATA_LOCATION, data: await fetchVerified(origins, 'segment weights', 'weights.url', weights.url, weights.sha256) }]
    : undefined;
  // Errors only: onnxruntime's optimizer notes are not the device owner's concern.
  const model = await ort.InferenceSession.create(bytes, { logSeverityLevel: 3, ...(externalData ? { externalData } : {}) });
  if (inspected.table) tableShapes.set(model, inspected.table);
  return model;
}

export { ort };

/**
 * The rows of `ids` from a token table, read so that what storage sees does not depend on them: the whole table is
 * streamed once, through a digest, and only the rows of `ids` are kept as they pass. The rows are returned only
 * if the table's SHA-256 matches. (Reading rows by byte range would tell storage which tokens the shard holds.) A
 * table other than the approved one fails as a hash mismatch alone, whatever its bytes (table-stream.ts).
 */
export async function shardTokenTable(
  origins: readonly string[],
  table: { sha256: string; url: string },
  ids: Iterable<number>,
  shape: TableShape,
): Promise<TokenTable> {
  const res = await storageFetch(origins, 'tokenTable.url', table.url);
  if (!res.ok || !res.body) throw new RoundError(`token table GET failed: HTTP ${res.status}`);
  // A body the runtime would decode has a content-length that is not its own: refused before a byte is read.
  const encoding = res.headers.get('content-encoding');
  if (encoding && encoding !== 'identity') throw new RoundError(`token table GET: served with content-encoding ${encoding}; the table is stored as it is`);
  const size = Number(res.headers.get('content-length'));
  if (!Number.isSafeInteger(size) || size <= 0) throw new RoundError('token table GET: no content-length');
  const stream = new crypto.DigestStream('SHA-256');
  const writer = stream.getWriter();
  const digest = { update: (chunk: Uint8Array) => writer.write(chunk), hex: async () => (await writer.close(), hex(await stream.digest)) };
  const got = await readTable(res.body, size, ids, shape, digest);
  if (got.sha256 !== table.sha256) throw new ModelHashMismatch(`token table hash mismatch: expected ${table.sha256}, got ${got.sha256}`);
  if ('problem' in got) throw new RoundError(`token table: ${got.problem}`);
  return got.rows;
}
