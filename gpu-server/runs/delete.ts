/**
 * Deleting a run: everything under runs/{id}/ goes. Devices that were still computing keep uploading through the
 * presigned URLs they hold, so the run's prefix is swept again once no device says it still computes, and, whatever
 * devices say, once every URL the run gave out has expired: a device's word that it is done is no proof, and one that
 * lies may write until then. A tombstone (deleted-runs/{id}.json) stays until that last sweep, keeps the id from
 * being taken meanwhile, and lets a server restarted in between finish the job. Content-addressed objects (segments,
 * token tables, tokenizers) are shared by runs and stay.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { getJson, putJson } from '../../core/storage/json.ts';
import { keys } from '../../core/storage/keys.ts';
import type { ObjectStore } from '../../core/storage/store.ts';
import type { DeviceApi, ResolvedRoundOptions } from '../rounds/context.ts';
import { LIMIT_DEFAULTS } from './spec.ts';
import type { RunRecord } from './types.ts';

export interface Tombstone {
  id: string;
  deletedAt: string;
  /** The last round that was started, whose devices may still upload. */
  round?: number;
  devices: RunRecord['spec']['devices'];
  /** When every URL the run gave out has expired (ms since the epoch). */
  urlsExpire: number;
}

/** Removes every object of the run, run.json last (so a sweep cut short leaves a run that is still listed). */
export async function sweep(store: ObjectStore, id: string): Promise<number> {
  let n = 0;
  for await (const o of store.list(`runs/${id}/`)) {
    if (o.key === keys.run(id)) continue;
    await store.delete(o.key);
    n++;
  }
  if (await store.head(keys.run(id))) {
    await store.delete(keys.run(id));
    n++;
  }
  return n;
}

export async function deleteRun(opts: ResolvedRoundOptions, record: RunRecord, round: number | undefined): Promise<number> {
  const tombstone: Tombstone = {
    id: record.id,
    deletedAt: new Date().toISOString(),
    round,
    devices: record.spec.devices,
    // A run that never started a round gave out no upload URL.
    urlsExpire: Date.now() + (round === undefined ? 0 : opts.urlSeconds * 1000),
  };
  await putJson(opts.store, keys.deletedRun(record.id), tombstone);
  const n = await sweep(opts.store, record.id);
  void finishDeletion(opts, tombstone);
  return n;
}

/**
 * Sweeps again when no device says it still computes the run's last round, and a last time when the run's URLs have
 * expired; then drops the tombstone.
 */
export async function finishDeletion(opts: ResolvedRoundOptions, t: Tombstone): Promise<void> {
  const device = (d: Tombstone['devices'][number]): DeviceApi => opts.device!(d, opts.roundSecret, LIMIT_DEFAULTS.callSeconds * 1000);
  const computing = async () => {
    if (t.round === undefined) return false;
    const states = await Promise.all(
      t.devices.map((d) =>
        device(d)
          .roundStatus(t.id, t.round!)
          .then(
            (s) => s.state,
            () => 'unknown',
          ),
      ),
    );
    return states.includes('running');
  };
  // Storage takes a URL until its expiry by its own clock, which may lag ours, and an upload it took then lands
  // later: the last sweep leaves a margin of a quarter of the URLs' life, 15 minutes at most.
  const lastSweep = t.urlsExpire + Math.min(15 * 60_000, (t.urlsExpire - Date.parse(t.deletedAt)) / 4);
  try {
    while (Date.now() < t.urlsExpire && (await computing())) await new Promise((r) => setTimeout(r, opts.pollMs ?? 2000));
    if (Date.now() < lastSweep) {
      await sweep(opts.store, t.id);
      opts.log?.(`run ${t.id}: swept again; the last sweep after its upload URLs expire (${new Date(lastSweep).toISOString()})`);
      // Unreferenced: a server stopping meanwhile does not wait; the next start finishes from the tombstone.
      await sleep(lastSweep - Date.now(), undefined, { ref: false });
    }
    await sweep(opts.store, t.id);
    await opts.store.delete(keys.deletedRun(t.id));
    opts.log?.(`run ${t.id}: deletion finished`);
  } catch (e) {
    // The tombstone stays: the next server start tries again.
    opts.log?.(`run ${t.id}: deletion not finished (${(e as Error).message}); the next start retries`);
  }
}

/** The deletions a previous server left unfinished. */
export async function* tombstones(store: ObjectStore): AsyncIterable<Tombstone> {
  for await (const o of store.list(keys.deletedRuns())) {
    const t = await getJson<Tombstone>(store, o.key);
    if (t) yield t;
  }
}
