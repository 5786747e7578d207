import { describe, expect, it } from 'vitest';
import { boundedBody } from './body.ts';

const CHUNK = 64 * 1024;

/** A request of `chunks` chunks, counting the chunks read of its body (none ahead of a read). */
function counted(chunks: number, headers: Record<string, string> = {}) {
  const read = { chunks: 0 };
  const body = new ReadableStream<Uint8Array>(
    { pull: (c) => (read.chunks < chunks ? (read.chunks++, c.enqueue(new Uint8Array(CHUNK).fill(read.chunks))) : c.close()) },
    { highWaterMark: 0 },
  );
  return { request: new Request('http://device/rounds', { method: 'POST', headers, body, duplex: 'half' } as RequestInit), read };
}

describe('a body read before its sender is known', () => {
  it('is read whole up to the cap, and the request can still be read after', async () => {
    const { request } = counted(4);
    const body = await boundedBody(request, 4 * CHUNK);
    expect(body?.byteLength).toBe(4 * CHUNK);
    expect(body![3 * CHUNK]).toBe(4);
    expect(new Uint8Array(await request.arrayBuffer())).toEqual(body);
  });

  it('is read no further than the cap when it streams in, and not at all when it declares more', async () => {
    const streamed = counted(64);
    expect(await boundedBody(streamed.request, 4 * CHUNK)).toBeUndefined();
    expect(streamed.read.chunks).toBeLessThanOrEqual(6);
    const declared = counted(64, { 'content-length': String(64 * CHUNK) });
    expect(await boundedBody(declared.request, 4 * CHUNK)).toBeUndefined();
    expect(declared.read.chunks).toBe(0);
  });
});
