/**
 * The poller: finds a device's activation objects as they arrive (incremental listing with StartAfter), downloads
 * and decodes a bounded number ahead of the trainer, and checks every object against the device's completion
 * manifest (size, SHA-256, tensor shapes and dtype, cut, who and which round, labels, value norms) before it may be
 * trained on, and the manifest against the plan. A bad object is rejected with its reason and skipped; a bad manifest
 * fails the device's part of the round. Every download is capped at the size the plan allows, so nothing a device
 * swaps into storage is read past it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { withRetries } from '../../core/retry.ts';
import { keys } from '../../core/storage/keys.ts';
import { ObjectTooLarge, type ObjectStore } from '../../core/storage/store.ts';
import type { ActivationManifest, ManifestBatch, RoundStatus } from '../../core/wire/round.ts';
import { canonicalDefence } from '../../core/privacy/defence.ts';
import { untrustedText } from '../../core/wire/untrusted.ts';
import { parseManifest, verify, type FeedSource, type VerifiedBatch } from './checks.ts';

export type { FeedSource, VerifiedBatch } from './checks.ts';

/** The largest activation object of a batch: fp32 hidden states, int32 masks and labels, and a generous header. */
export function maxBatchBytes(batchSize: number, seqLen: number, nEmbd: number): number {
  // Per position: the hidden state, the mask and (generation) a label.
  return batchSize * seqLen * (nEmbd * 4 + 8) + batchSize * 4 + 64 * 1024;
}

/** Batches a feed downloads ahead of the one being trained on, unless told otherwise. */
export const DEFAULT_PREFETCH = 4;

export interface FeedOptions {
  /** Batches downloaded ahead of the one being trained on (DEFAULT_PREFETCH). */
  prefetch?: number;
  pollMs?: number;
  /** Training order over the manifest's batches (indices into it); manifest order by default. */
  order?: (batches: ManifestBatch[]) => number[];
  /** Keys already trained on (a resumed round): not downloaded again. */
  skip?: ReadonlySet<string>;
  /** The device's own view of its round: a device that failed ends the wait. */
  deviceStatus?: () => Promise<RoundStatus | undefined>;
  onReject?: (key: string, reason: string) => void;
  /** Called once, when the manifest has been read. */
  onManifest?: (manifest: ActivationManifest) => void;
  /** Tries per storage call, and the first retry's delay (doubling after it). */
  attempts?: number;
  backoffMs?: number;
  /** How long the device has to write its manifest, from `askedAt` (when it was asked to start its round; default now). */
  deadlineMs?: number;
  askedAt?: number;
  /** Aborted (a cancel): the wait for the manifest ends at once. */
  signal?: AbortSignal;
}

export class DeviceRoundFailed extends Error {}

/** A manifest lists a few hundred bytes per batch; one larger than this is not downloaded. */
const MAX_MANIFEST_BYTES = 16 * 1024 * 1024;

/**
 * Bounded retries with exponential backoff; the last failure is thrown, naming what was tried. An object too large
 * stays too large: it is not asked for again.
 */
export async function retried<T>(what: string, fn: () => Promise<T>, attempts = 4, backoffMs = 100): Promise<T> {
  return withRetries(fn, { attempts, backoffMs, permanent: (e) => e instanceof ObjectTooLarge }).catch((e: Error) => {
    throw e instanceof ObjectTooLarge ? e : new Error(`${what} failed after ${attempts} attempts: ${e.message}`, { cause: e });
  });
}

export async function* activationFeed(store: ObjectStore, src: FeedSource, opts: FeedOptions = {}): AsyncGenerator<VerifiedBatch> {
  const {
    prefetch = DEFAULT_PREFETCH,
    pollMs = 100,
    skip = new Set<string>(),
    onReject = () => {},
    attempts = 4,
    backoffMs = 100,
    deadlineMs = 30 * 60_000,
    askedAt = Date.now(),
  } = opts;
  const prefix = keys.activations(src.runId, src.deviceId, src.round);
  const manifestKey = keys.activationManifest(src.runId, src.deviceId, src.round);
  const downloads = new Map<string, Promise<Uint8Array | undefined>>();
  const fetchKey = (key: string, maxBytes: number) => {
    let d = downloads.get(key);
    if (!d) {
      d = retried(`GET ${key}`, () => store.get(key, { maxBytes }), attempts, backoffMs);
      // Marked handled now: a prefetched download that fails while another batch trains must not end the process.
      // Its error is thrown when the trainer reaches it.
      d.catch(() => {});
      downloads.set(key, d);
    }
    return d;
  };
  // Bounded and escaped again here: a problem may quote what the device wrote, and goes to the log, API and metrics.
  const failed = (problem: string) => new DeviceRoundFailed(`device ${src.deviceId} round ${src.round}: ${untrustedText(problem)}`);

  // Until the manifest is there: list what is new, and start downloads while the prefetch window has room.
  let manifestBytes: Uint8Array | undefined;
  let after: string | undefined;
  const deadline = askedAt + deadlineMs;
  let unreadable = 0;
  /** Object sizes from the listing: an object is checked against its manifest entry before it is downloaded. */
  const sizes = new Map<string, number>();
  for (let polls = 0; !manifestBytes; polls++) {
    const listed = await retried(`LIST ${prefix}`, () => listAll(store, prefix, after), attempts, backoffMs);
    for (const o of listed) {
      after = o.key;
      sizes.set(o.key, o.size);
      if (o.key === manifestKey) {
        if (o.size > MAX_MANIFEST_BYTES) {
          onReject(o.key, `${o.size} bytes`);
          throw failed(`the manifest is ${o.size} bytes, more than any manifest needs (${MAX_MANIFEST_BYTES})`);
        }
        manifestBytes =
          (await fetchKey(o.key, MAX_MANIFEST_BYTES).catch((e: Error) => {
            throw failed(e.message);
          })) ?? new Uint8Array(0);
      } else if (!skip.has(o.key) && downloads.size < prefetch && o.size <= src.maxBatchBytes) fetchKey(o.key, src.maxBatchBytes);
    }
    if (manifestBytes) break;
    if (opts.deviceStatus && polls % 10 === 0) {
      // A device may be restarting: only several unreadable statuses in a row give up on it.
      const status = await abortable(opts.deviceStatus(), opts.signal).then(
        (st) => ((unreadable = 0), st),
        (e: Error) => {
          if (++unreadable >= attempts) throw failed(`its status could not be read ${attempts} times in a row: ${e.message}`);
          return undefined;
        },
      );
      if (status?.state === 'failed') throw new DeviceRoundFailed(`device ${src.deviceId} failed round ${src.round}: ${status.error}`);
    }
    if (opts.signal?.aborted) throw failed('cancelled');
    if (Date.now() > deadline) throw failed(`no manifest ${deadlineMs / 1000} s after it was asked to start (limits.uploadSeconds)`);
    await sleep(pollMs, undefined, { signal: opts.signal }).catch(() => {});
  }
  downloads.delete(manifestKey);

  // Whatever the device wrote, checking its manifest fails this device's part of the round, never the round.
  let checked: { manifest: ActivationManifest; bound: number } | string;
  try {
    const manifest = parseManifest(manifestBytes, src);
    if (typeof manifest === 'string') checked = manifest;
    else {
      const bound = src.normBound(manifest.defence, manifest.clip);
      checked = typeof bound === 'string' ? bound : { manifest, bound };
    }
  } catch (e) {
    checked = `its manifest could not be checked (${(e as Error).name})`;
  }
  if (typeof checked === 'string') {
    onReject(manifestKey, checked);
    throw failed(checked);
  }
  const { manifest, bound } = checked;
  opts.onManifest?.(manifest);
  // What every batch must name: the setting the manifest says the round was uploaded under.
  const defence = canonicalDefence(manifest.defence);
  const order = opts.order?.(manifest.batches) ?? manifest.batches.map((_, i) => i);
  const wanted = order.map((i) => manifest.batches[i]).filter((b) => !skip.has(keys.activationBatch(src.runId, src.deviceId, src.round, b.index)));
  const keyOf = (b: ManifestBatch) => keys.activationBatch(src.runId, src.deviceId, src.round, b.index);
  // Sizes are checked before anything is downloaded. A listing may show an object still being written (with the
  // size so far), so a size that differs from the manifest's is asked for again before the object is refused.
  const prepared = new Map<string, Promise<string | undefined>>();
  const prepare = (b: ManifestBatch): Promise<string | undefined> => {
    const key = keyOf(b);
    let p = prepared.get(key);
    if (!p) {
      p = (async () => {
        let size = sizes.get(key);
        if (size !== b.bytes) size = (await retried(`HEAD ${key}`, () => store.head(key), attempts, backoffMs))?.size;
        if (size !== undefined && size !== b.bytes) return `stored size ${size} differs from the manifest's ${b.bytes}`;
        fetchKey(key, b.bytes);
        return undefined;
      })();
      p.catch(() => {}); // handled when the trainer reaches it, like a download
      prepared.set(key, p);
    }
    return p;
  };
  for (let i = 0; i < wanted.length; i++) {
    for (let j = i; j < Math.min(wanted.length, i + prefetch + 1); j++) void prepare(wanted[j]);
    const entry = wanted[i];
    const key = keyOf(entry);
    const sizeProblem = await prepare(entry);
    if (sizeProblem) {
      onReject(key, sizeProblem);
      continue;
    }
    // Downloaded once, capped at the manifest's size (a body cut short in transit is retried by the download itself).
    const bytes = await fetchKey(key, entry.bytes).catch((e: Error) => {
      if (e instanceof ObjectTooLarge) return e;
      throw e;
    });
    downloads.delete(key);
    const checked = bytes instanceof Error ? bytes.message : bytes ? await verify(bytes, entry, src, key, defence, bound) : 'missing from storage';
    if (typeof checked === 'string') onReject(key, checked);
    else yield checked;
  }
}

/** A promise that also ends, rejected, when `signal` aborts: a device that is slow to answer cannot hold a cancel. */
export function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const abort = () => reject(new Error('cancelled'));
    if (signal.aborted) return abort();
    signal.addEventListener('abort', abort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', abort));
  });
}

async function listAll(store: ObjectStore, prefix: string, after: string | undefined) {
  const out = [];
  for await (const o of store.list(prefix, after)) out.push(o);
  return out;
}
