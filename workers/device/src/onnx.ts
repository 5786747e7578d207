/**
 * onnxruntime-web (WASM, 1 thread) inside workerd. Workers may not compile WebAssembly from bytes, so the runtime's
 * .wasm is imported precompiled (wrangler's CompiledWasm rule) and handed to the Emscripten loader in place of the
 * bytes it would otherwise instantiate. Sessions are cached per model SHA-256 for the life of the isolate.
 */
import * as ort from 'onnxruntime-web/wasm';
import ortWasm from '../../../node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm';
import { hex, sha256Hex } from '../../../core/auth/signing.ts';
import { readTokenRows, type TokenTable } from '../../../core/onnx/embedding.ts';

let configured = false;

function configure(): void {
  if (configured) return;
  configured = true;
  const instantiate = WebAssembly.instantiate.bind(WebAssembly);
  WebAssembly.instantiate = (async (source: BufferSource | WebAssembly.Module, imports?: WebAssembly.Imports) => {
    if (source instanceof WebAssembly.Module) return instantiate(source, imports);
    return { instance: await instantiate(ortWasm, imports), module: ortWasm };
  }) as typeof WebAssembly.instantiate;
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  // Any bytes: ORT then skips fetching its .wasm, and the instantiate above supplies the real module.
  ort.env.wasm.wasmBinary = new Uint8Array(8);
}

export class ModelHashMismatch extends Error {}

const sessions = new Map<string, Promise<ort.InferenceSession>>();

/** The session for a model, fetched from `url` and checked against `sha256` on first use. */
export function session(sha256: string, url: string): Promise<ort.InferenceSession> {
  let s = sessions.get(sha256);
  if (!s) {
    s = load(sha256, url);
    sessions.set(sha256, s);
    s.catch(() => sessions.delete(sha256));
  }
  return s;
}

async function load(sha256: string, url: string): Promise<ort.InferenceSession> {
  configure();
  const res = await fetch(url);
  if (!res.ok) throw new Error(`model segment GET failed: HTTP ${res.status}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  const actual = await sha256Hex(bytes);
  if (actual !== sha256) throw new ModelHashMismatch(`model segment hash mismatch: expected ${sha256}, got ${actual}`);
  // Errors only: onnxruntime's optimizer notes are not the device owner's concern.
  return ort.InferenceSession.create(bytes, { logSeverityLevel: 3 });
}

export { ort };

const verifiedTables = new Map<string, Promise<number>>();

/** Streams the whole table once through a digest (nothing buffered) and returns its size if the hash matches. */
function verifyTable(sha256: string, url: string): Promise<number> {
  let v = verifiedTables.get(sha256);
  if (!v) {
    v = (async () => {
      const res = await fetch(url);
      if (!res.ok || !res.body) throw new Error(`token table GET failed: HTTP ${res.status}`);
      const digest = new crypto.DigestStream('SHA-256');
      await res.body.pipeTo(digest);
      const actual = hex(await digest.digest);
      if (actual !== sha256) throw new ModelHashMismatch(`token table hash mismatch: expected ${sha256}, got ${actual}`);
      return Number(digest.bytesWritten);
    })();
    verifiedTables.set(sha256, v);
    v.catch(() => verifiedTables.delete(sha256));
  }
  return v;
}

/** The rows of `ids` from a verified token table, read by HTTP Range requests. */
export async function tokenRows(table: { sha256: string; url: string }, ids: Iterable<number>): Promise<TokenTable> {
  const size = await verifyTable(table.sha256, table.url);
  const read = async (offset: number, length: number) => {
    const res = await fetch(table.url, { headers: { range: `bytes=${offset}-${offset + length - 1}` } });
    if (res.status !== 206 && res.status !== 200) throw new Error(`token table range GET failed: HTTP ${res.status}`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    // A server that ignores Range answers 200 with the whole file: take the part asked for.
    return res.status === 200 ? bytes.slice(offset, offset + length) : bytes;
  };
  return readTokenRows(read, size, ids, 'token table');
}
