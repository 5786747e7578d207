import { describe, expect, it } from 'vitest';
import { readUpTo } from './read-up-to.ts';

/** A stream of `n` chunks of 1,000 bytes that counts the chunks pulled from it. */
function counted(n: number) {
  const state = { pulled: 0, cancelled: false };
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (state.pulled === n) return c.close();
      state.pulled++;
      c.enqueue(new Uint8Array(1000).fill(state.pulled));
    },
    cancel() {
      state.cancelled = true;
    },
  });
  return { stream, state };
}

describe('reading up to a cap', () => {
  it('reads a stream within the cap whole, in order', async () => {
    const { stream } = counted(3);
    const bytes = await readUpTo(stream, 3000);
    expect(bytes?.byteLength).toBe(3000);
    expect([bytes![0], bytes![1000], bytes![2999]]).toEqual([1, 2, 3]);
  });

  it('stops at the first chunk past the cap and cancels the stream, however long it is', async () => {
    const { stream, state } = counted(1_000_000);
    expect(await readUpTo(stream, 2500)).toBeUndefined();
    expect(state.pulled).toBeLessThanOrEqual(4);
    expect(state.cancelled).toBe(true);
  });
});
