/**
 * The poller: finds a device's activation objects as they arrive (incremental listing with StartAfter), downloads
 * and decodes a bounded number ahead of the trainer, and checks every object against the device's completion
 * manifest (size, SHA-256, tensor shapes, cut, who and which round) before it may be trained on. A bad object is
 * rejected with its reason and skipped; it is never trained on.
 */
import { sha256Hex } from '../../core/auth/signing.ts';
import { keys } from '../../core/storage/keys.ts';
import type { ObjectStore } from '../../core/storage/store.ts';
import { decodeActivationBatch, type ActivationBatch } from '../../core/wire/activations.ts';
import type { ActivationManifest, ManifestBatch, RoundStatus } from '../../core/wire/round.ts';

export interface FeedSource {
  runId: string;
  deviceId: string;
  /** The round whose activations are read: an earlier one when the server reuses cached activations. */
  round: number;
  cut: number;
  nEmbd: number;
}

export interface VerifiedBatch extends ActivationBatch {
  key: string;
  bytes: number;
}

export interface FeedOptions {
  /** Batches downloaded ahead of the one being trained on. */
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
}

export class DeviceRoundFailed extends Error {}

export async function* activationFeed(store: ObjectStore, src: FeedSource, opts: FeedOptions = {}): AsyncGenerator<VerifiedBatch> {
  const { prefetch = 4, pollMs = 100, skip = new Set<string>(), onReject = () => {} } = opts;
  const prefix = keys.activations(src.runId, src.deviceId, src.round);
  const manifestKey = keys.activationManifest(src.runId, src.deviceId, src.round);
  const downloads = new Map<string, Promise<Uint8Array | undefined>>();
  const fetchKey = (key: string) => {
    let d = downloads.get(key);
    if (!d) downloads.set(key, (d = store.get(key)));
    return d;
  };

  // Until the manifest is there: list what is new, and start downloads while the prefetch window has room.
  let manifest: ActivationManifest | undefined;
  let after: string | undefined;
  for (let polls = 0; !manifest; polls++) {
    for await (const o of store.list(prefix, after)) {
      after = o.key;
      if (o.key === manifestKey) manifest = JSON.parse(new TextDecoder().decode(await store.get(o.key)));
      else if (!skip.has(o.key) && downloads.size < prefetch) fetchKey(o.key);
    }
    if (manifest) break;
    if (opts.deviceStatus && polls % 10 === 0) {
      const status = await opts.deviceStatus();
      if (status?.state === 'failed') throw new DeviceRoundFailed(`device ${src.deviceId} failed round ${src.round}: ${status.error}`);
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }

  const problem = manifestProblem(manifest, src);
  if (problem) {
    onReject(manifestKey, problem);
    throw new DeviceRoundFailed(`device ${src.deviceId} round ${src.round}: ${problem}`);
  }
  opts.onManifest?.(manifest);
  const order = opts.order?.(manifest.batches) ?? manifest.batches.map((_, i) => i);
  const wanted = order.map((i) => manifest!.batches[i]).filter((b) => !skip.has(keys.activationBatch(src.runId, src.deviceId, src.round, b.index)));
  const keyOf = (b: ManifestBatch) => keys.activationBatch(src.runId, src.deviceId, src.round, b.index);
  for (let i = 0; i < wanted.length; i++) {
    for (let j = i; j < Math.min(wanted.length, i + prefetch + 1); j++) fetchKey(keyOf(wanted[j]));
    const entry = wanted[i];
    const key = keyOf(entry);
    const bytes = await fetchKey(key);
    downloads.delete(key);
    const checked = bytes ? await verify(bytes, entry, src, key) : 'missing from storage';
    if (typeof checked === 'string') onReject(key, checked);
    else yield checked;
  }
}

function manifestProblem(m: ActivationManifest, src: FeedSource): string | undefined {
  if (m.version !== 1 || !Array.isArray(m.batches)) return 'the manifest is not a version-1 activation manifest';
  if (m.device !== src.deviceId || m.runId !== src.runId || m.round !== src.round) return `the manifest is for ${m.device}/${m.runId}/${m.round}`;
  if (m.cut !== src.cut) return `the manifest says cut ${m.cut}, the plan says ${src.cut}`;
  return undefined;
}

async function verify(bytes: Uint8Array, entry: ManifestBatch, src: FeedSource, key: string): Promise<VerifiedBatch | string> {
  if (bytes.byteLength !== entry.bytes) return `size ${bytes.byteLength} differs from the manifest's ${entry.bytes}`;
  if ((await sha256Hex(bytes)) !== entry.sha256) return 'SHA-256 differs from the manifest';
  let b: ActivationBatch;
  try {
    b = decodeActivationBatch(bytes, key);
  } catch (e) {
    return (e as Error).message;
  }
  if (b.device !== src.deviceId || b.runId !== src.runId || b.round !== src.round || b.batch !== entry.index) return `metadata says ${b.device}/${b.runId}/round ${b.round}/batch ${b.batch}`;
  if (b.cut !== src.cut) return `cut ${b.cut}, the plan says ${src.cut}`;
  if (b.nEmbd !== src.nEmbd) return `hidden size ${b.nEmbd}, the model's is ${src.nEmbd}`;
  if (b.rows !== entry.rows || b.seqLen !== entry.seqLen) return `shape [${b.rows}, ${b.seqLen}] differs from the manifest's [${entry.rows}, ${entry.seqLen}]`;
  return { ...b, key, bytes: bytes.byteLength };
}
