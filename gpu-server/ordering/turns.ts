/**
 * The order a round trains its batches in, once for the server (rounds/train.ts) and the experiments
 * (experiments/sim/methods.ts), so that what the experiments measure is the server's policy: devices in the client
 * order (ordering.ts); within a device, its batches in a permutation seeded by the run, the round and the device
 * (the same after a restart); by device, every batch of one device before the next, or interleaved, one batch of
 * each device in turn, a device leaving the rotation when its batches run out or fail.
 */
import { Random } from '../../core/random.ts';
import { permutation } from './ordering.ts';

export type BatchOrder = 'by-device' | 'interleaved';

/** A turn of the round: a device's next batch, or the end of its batches (with why, when they failed). */
export type Turn<B> = { device: string; batch: B } | { device: string; end: true; failure?: unknown };

/** The order of a device's `count` batches in a round: a permutation of 0..count-1. */
export function deviceBatchOrder(count: number, { seed, round, device }: { seed: number; round: number; device: string }): number[] {
  return permutation(
    Array.from({ length: count }, (_, i) => String(i)),
    new Random(seed * 31 + round * 7 + hashString(device)),
  ).map(Number);
}

/**
 * The round's turns over the devices in `order`. `open` starts a device's batches when its turn first comes (by
 * device: after the device before it ended; interleaved: every device at the start), or returns undefined to leave
 * it out. Ending the iteration early (a cancel) closes every open device's batches.
 */
export async function* turns<B>(
  order: readonly string[],
  batchOrder: BatchOrder,
  open: (device: string) => Promise<AsyncIterator<B> | undefined>,
): AsyncGenerator<Turn<B>> {
  const active: Array<{ device: string; batches: AsyncIterator<B> }> = [];
  const waiting = [...order];
  const start = async (device: string) => {
    const batches = await open(device);
    if (batches) active.push({ device, batches });
  };
  try {
    if (batchOrder === 'interleaved') while (waiting.length > 0) await start(waiting.shift()!);
    while (active.length > 0 || waiting.length > 0) {
      if (active.length === 0) {
        await start(waiting.shift()!);
        continue;
      }
      for (let i = 0; i < active.length;) {
        const { device, batches } = active[i]!;
        let next: IteratorResult<B>;
        try {
          next = await batches.next();
        } catch (failure) {
          active.splice(i, 1);
          yield { device, end: true, failure };
          continue;
        }
        if (next.done) {
          active.splice(i, 1);
          yield { device, end: true };
          continue;
        }
        yield { device, batch: next.value };
        // By device, the same device again until its batches run out.
        if (batchOrder === 'interleaved') i++;
      }
    }
  } finally {
    await Promise.all(active.map(({ batches }) => batches.return?.(undefined)));
  }
}

/** Batches held in memory as a device's batches (the experiments' devices). */
export async function* inOrder<B>(batches: readonly B[]): AsyncGenerator<B> {
  yield* batches;
}

/** A device id as a seed: its batch order differs from other devices' and stays the same across restarts. */
function hashString(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h % 100_000;
}
