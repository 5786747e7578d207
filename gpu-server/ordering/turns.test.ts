import { describe, expect, it } from 'vitest';
import { deviceBatchOrder, inOrder, turns, type BatchOrder, type Turn } from './turns.ts';

const BATCHES: Record<string, string[]> = { a: ['a0', 'a1', 'a2'], b: ['b0'], c: ['c0', 'c1'] };

async function collect(
  order: string[],
  batchOrder: BatchOrder,
  open: (id: string) => Promise<AsyncIterator<string> | undefined> = async (id) => inOrder(BATCHES[id]!),
): Promise<string[]> {
  const out: string[] = [];
  for await (const t of turns(order, batchOrder, open))
    out.push('batch' in t ? t.batch : `end ${t.device}${t.failure ? ` (${(t.failure as Error).message})` : ''}`);
  return out;
}

describe('the round schedule', () => {
  it('by device: every batch of a device, its end, then the next device, in the client order', async () => {
    expect(await collect(['c', 'a', 'b'], 'by-device')).toEqual(['c0', 'c1', 'end c', 'a0', 'a1', 'a2', 'end a', 'b0', 'end b']);
  });

  it('interleaved: one batch of each device in turn, a device leaving when its batches run out', async () => {
    expect(await collect(['c', 'a', 'b'], 'interleaved')).toEqual(['c0', 'a0', 'b0', 'c1', 'a1', 'end b', 'end c', 'a2', 'end a']);
  });

  it('a device whose batches fail ends with the failure, and the others go on; a device left out has no turn', async () => {
    async function* failing() {
      yield 'a0';
      throw new Error('manifest refused');
    }
    const open = async (id: string) => (id === 'b' ? undefined : id === 'a' ? failing() : inOrder(BATCHES[id]!));
    expect(await collect(['a', 'b', 'c'], 'interleaved', open)).toEqual(['a0', 'c0', 'end a (manifest refused)', 'c1', 'end c']);
    expect(await collect(['a', 'b', 'c'], 'by-device', open)).toEqual(['a0', 'end a (manifest refused)', 'c0', 'c1', 'end c']);
  });

  it('by device opens a device only when its turn comes; interleaved opens them all at the start', async () => {
    for (const [batchOrder, want] of [
      ['by-device', ['open c', 'c0', 'c1', 'open a']],
      ['interleaved', ['open c', 'open a', 'open b', 'c0', 'a0']],
    ] as const) {
      const seen: string[] = [];
      const open = async (id: string) => {
        seen.push(`open ${id}`);
        return inOrder(BATCHES[id]!);
      };
      for await (const t of turns(['c', 'a', 'b'], batchOrder, open)) {
        if (seen.length >= want.length) break;
        if ('batch' in t) seen.push(t.batch);
      }
      expect(seen).toEqual(want);
    }
  });

  it('ending early (a cancel) closes every device still open', async () => {
    const closed: string[] = [];
    const open = async (id: string) =>
      (async function* () {
        try {
          yield* BATCHES[id]!;
        } finally {
          closed.push(id);
        }
      })();
    const gen = turns(['a', 'c'], 'interleaved', open);
    const first: Array<IteratorResult<Turn<string>>> = [await gen.next(), await gen.next()];
    expect(first.map((r) => r.value)).toEqual([
      { device: 'a', batch: 'a0' },
      { device: 'c', batch: 'c0' },
    ]);
    await gen.return(undefined);
    expect(closed.sort()).toEqual(['a', 'c']);
  });

  it("a device's batch order is a permutation, the same for the same run, round and device, and differs between them", () => {
    const order = deviceBatchOrder(20, { seed: 1, round: 0, device: 'device-1' });
    expect([...order].sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(deviceBatchOrder(20, { seed: 1, round: 0, device: 'device-1' })).toEqual(order);
    expect(deviceBatchOrder(20, { seed: 1, round: 1, device: 'device-1' })).not.toEqual(order);
    expect(deviceBatchOrder(20, { seed: 1, round: 0, device: 'device-2' })).not.toEqual(order);
    expect(deviceBatchOrder(20, { seed: 2, round: 0, device: 'device-1' })).not.toEqual(order);
  });
});
