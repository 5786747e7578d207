/**
 * onnxruntime-web (WASM, 1 thread) inside workerd. Workers may not compile WebAssembly from bytes, so the runtime's
 * .wasm is imported precompiled (wrangler's CompiledWasm rule) and handed to the Emscripten loader in place of the
 * bytes it would otherwise instantiate. Sessions are cached per model SHA-256 for the life of the isolate.
 */
import * as ort from 'onnxruntime-web/wasm';
import ortWasm from '../../../node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm';
import { sha256Hex } from '../../../core/auth/signing.ts';

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
  return ort.InferenceSession.create(bytes);
}

export { ort };
