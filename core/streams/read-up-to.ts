/**
 * A body read from someone the reader does not trust (a device's answer, an object anyone with its URL could swap,
 * an unauthenticated request) is read chunk by chunk and given up the moment it passes its cap, never read whole
 * first.
 */

/** The stream's bytes, or undefined (the stream cancelled) as soon as they pass `maxBytes`. */
export async function readUpTo(stream: ReadableStream<Uint8Array>, maxBytes: number): Promise<Uint8Array | undefined> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      // Not awaited: a branch of a tee'd stream (a cloned request) finishes cancelling only once its twin is
      // cancelled too, which is the caller's to do.
      reader.cancel().catch(() => {});
      return undefined;
    }
    chunks.push(value);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}
