/**
 * The runs this server knows, and what the API may ask of them: create, trigger, cancel and delete runs, and views of
 * their state. Rounds themselves are gpu-server/rounds/; a run's state lives in storage, so a restarted server finds
 * its runs again and resumes any round left unfinished.
 */
import { setMaxListeners } from 'node:events';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS } from '../../core/peft/adapter.ts';
import { getJson, putJson } from '../../core/storage/json.ts';
import { checkId, keys } from '../../core/storage/keys.ts';
import { deviceApi, resolveRoundOptions, type ResolvedRoundOptions, type RoundOptions } from '../rounds/context.ts';
import { unload, type RunState } from './state.ts';
import { runRound } from '../rounds/round.ts';
import { POLICY_SECONDS } from './approved-cuts.ts';
import { newRun, newRunId } from './create.ts';
import { deleteRun, finishDeletion, tombstones, type Tombstone } from './delete.ts';
import { Conflict, NotFound, SpecError } from './errors.ts';
import { readMetrics } from './metrics.ts';
import { runSummary, type RunSummary } from './summary.ts';
import type { RoundPlan } from './plan.ts';
import { parseRunSpec, type RunSpec } from './spec.ts';
import type { RoundMetrics, RoundProgress, RunRecord } from './types.ts';

/** The longest a cancel waits for its round to stop before it answers. */
const CANCEL_WAIT_MS = 5_000;

export interface RunView extends RunRecord {
  running: boolean;
  progress: RoundProgress | null;
  metrics: RoundMetrics[];
}

export interface RoundView {
  plan: RoundPlan;
  progress: RoundProgress | null;
  metrics: RoundMetrics | null;
}

export type DeviceView = RunSpec['devices'][number] &
  RunRecord['cuts'][string] &
  ({ reachable: true; rows: number; shards: Array<{ name: string; rows: number }> } | { reachable: false; error: string });

export class RunRegistry {
  private readonly runs = new Map<string, RunState>();
  private readonly creating = new Set<string>();
  /** Ids of runs being deleted, until their tombstones are stored. */
  private readonly deleting = new Set<string>();
  private readonly log: (m: string) => void;

  private readonly opts: ResolvedRoundOptions;

  constructor(opts: RoundOptions) {
    this.log = opts.log ?? ((m) => console.log(`[server] ${m}`));
    this.opts = resolveRoundOptions({ ...opts, log: this.log });
  }

  /** Loads the runs in storage and resumes any round a previous server left unfinished (unless it was cancelled). */
  async init(): Promise<void> {
    const deleting = new Set<string>();
    for await (const t of tombstones(this.opts.store)) {
      deleting.add(t.id);
      void finishDeletion(this.opts, t);
    }
    for await (const o of this.opts.store.list(keys.runs())) {
      if (!o.key.endsWith('/run.json')) continue;
      const record = await getJson<RunRecord>(this.opts.store, o.key);
      if (!record || deleting.has(record.id)) continue;
      // A run stored by an earlier version lacks the fields added since: their defaults, as a new run gets them.
      record.spec = parseRunSpec(record.spec);
      const state: RunState = { record, updates: new Map(), segments: new Map(), calibrations: new Map() };
      this.runs.set(record.id, state);
      const round = await this.unfinishedRound(record.id);
      if (round !== undefined && record.cancelled?.round !== round) {
        this.log(`run ${record.id}: resuming round ${round}`);
        this.start(state, round);
      }
    }
  }

  async create(spec: RunSpec, id = newRunId()): Promise<RunRecord> {
    try {
      checkId('run', id);
    } catch (e) {
      throw new SpecError(`field 'id': ${(e as Error).message}`);
    }
    if (this.runs.has(id) || this.creating.has(id)) throw new Conflict(`run ${id} exists`);
    if (this.deleting.has(id)) throw new Conflict(`run ${id} is being deleted: choose another id`);
    // Creation reads the model and asks every device (seconds): the id is held meanwhile, so a second request for
    // it is refused rather than racing this one.
    this.creating.add(id);
    try {
      // A deleted run's last sweep would take the new run's objects.
      const deleted = await getJson<Tombstone>(this.opts.store, keys.deletedRun(id));
      if (deleted)
        throw new Conflict(
          `run ${id} was deleted, and its objects are swept until its upload URLs expire (${new Date(deleted.urlsExpire).toISOString()}): choose another id`,
        );
      return await this.build(id, spec);
    } finally {
      this.creating.delete(id);
    }
  }

  private async build(id: string, spec: RunSpec): Promise<RunRecord> {
    // A device's policy may take the run's limits.callSeconds, and POLICY_SECONDS at most: an offline device must not
    // hold the request for long.
    const timeoutMs = Math.min(spec.limits.callSeconds, POLICY_SECONDS) * 1000;
    const { record, model, tokenizer } = await newRun(id, spec, this.opts.dataDirs, (d) => this.opts.device(d, this.opts.roundSecret, timeoutMs).policy());
    for (const [device, c] of Object.entries(record.cuts)) if (c.unchecked) this.log(`run ${id}: device ${device}'s cut ${c.cut} is unchecked: ${c.unchecked}`);
    await putJson(this.opts.store, keys.run(id), record);
    this.runs.set(id, { record, model, tokenizer, updates: new Map(), segments: new Map(), calibrations: new Map() });
    this.log(
      `run ${id}: created; cuts ${JSON.stringify(Object.fromEntries(Object.entries(record.cuts).map(([k, v]) => [k, v.cut])))}, adapters on blocks ${record.deepestCut}..${model.config.nLayer - 1}`,
    );
    return record;
  }

  list(): RunRecord[] {
    return [...this.runs.values()].map((s) => s.record);
  }

  /** Each run in one line: status and last accuracy (metrics read once per run, then kept as rounds finish). */
  async summaries(): Promise<RunSummary[]> {
    return Promise.all(
      [...this.runs.values()].map(async (s) => {
        if (s.lastMetrics === undefined) s.lastMetrics = (await readMetrics(this.opts.store, s.record.id)).at(-1) ?? null;
        return runSummary(s, s.lastMetrics ?? undefined);
      }),
    );
  }

  private state(id: string): RunState {
    const s = this.runs.get(id);
    if (!s) throw new NotFound(`no run '${id}'`);
    return s;
  }

  async view(id: string): Promise<RunView> {
    const s = this.state(id);
    return { ...s.record, running: s.running !== undefined, progress: s.progress ?? null, metrics: await this.metrics(id) };
  }

  async round(id: string, round: number): Promise<RoundView> {
    const progress = this.state(id).progress;
    const plan = await getJson<RoundPlan>(this.opts.store, keys.plan(id, round));
    if (!plan) throw new NotFound(`run ${id} has no round ${round}`);
    const metrics = (await this.metrics(id)).find((m) => m.round === round) ?? null;
    return { plan, progress: progress?.round === round ? progress : null, metrics };
  }

  async metrics(id: string): Promise<RoundMetrics[]> {
    this.state(id);
    return readMetrics(this.opts.store, id);
  }

  async adapterFile(id: string, round: number | 'latest', file: string): Promise<Uint8Array> {
    this.state(id);
    if (file !== ADAPTER_CONFIG && file !== ADAPTER_WEIGHTS)
      throw new NotFound(`no adapter file '${file}': there are ${ADAPTER_CONFIG} and ${ADAPTER_WEIGHTS}`);
    const r = round === 'latest' ? (await this.metrics(id)).at(-1)?.round : round;
    const bytes = r === undefined ? undefined : await this.opts.store.get(keys.adapter(id, r, file));
    if (!bytes) throw new NotFound(`run ${id} has no adapter for round ${round} yet`);
    return bytes;
  }

  /** A device of the run as the spec and planner see it, and whether it answers now. */
  async device(id: string, deviceId: string): Promise<DeviceView> {
    const s = this.state(id);
    const device = deviceApi(s, this.opts, deviceId);
    const d = s.record.spec.devices.find((x) => x.id === deviceId)!;
    const reach = await device
      .shards()
      .then((list) => ({ reachable: true as const, rows: list.reduce((a, x) => a + x.rows, 0), shards: list.map(({ name, rows }) => ({ name, rows })) }))
      .catch((e: Error) => ({ reachable: false as const, error: e.message }));
    return { ...d, ...s.record.cuts[d.id], ...reach };
  }

  async devices(id: string): Promise<DeviceView[]> {
    return Promise.all(this.state(id).record.spec.devices.map((d) => this.device(id, d.id)));
  }

  /** Starts the run's next round (or resumes its unfinished one) in the background; returns its number. */
  async trigger(id: string): Promise<number> {
    const s = this.state(id);
    if (s.running) throw new Conflict(`run ${id} is already running round ${s.progress?.round}`);
    let round = await this.unfinishedRound(id);
    if (round === undefined) {
      round = 0;
      while (await this.opts.store.head(keys.roundDone(id, round))) round++;
      const planned = s.record.spec.training.rounds;
      // Its learning rate has decayed to its end: more rounds would train at the schedule's last value, or at zero.
      if (round >= planned) throw new Conflict(`run ${id} has done its ${planned} planned round(s) (training.rounds): create a new run to train more`);
    }
    if (s.record.cancelled) {
      delete s.record.cancelled;
      await putJson(this.opts.store, keys.run(id), s.record);
    }
    this.start(s, round);
    return round;
  }

  /** Stops the running round at its next batch boundary; what trained is checkpointed and written as the round's adapter. */
  async cancel(id: string): Promise<RoundProgress> {
    const s = this.state(id);
    if (!s.running || !s.cancel || !s.progress) throw new Conflict(`run ${id} has no round running`);
    const round = s.progress.round;
    s.cancel.abort();
    // In place: the round holds the same record and may write it (its learning-rate schedule) while it stops.
    s.record.cancelled = { round, at: new Date().toISOString() };
    await putJson(this.opts.store, keys.run(id), s.record);
    // The round stops at its next batch boundary, and no wait on a device outlasts a cancel; the answer comes within
    // CANCEL_WAIT_MS whatever a device does (the progress then says 'training' until the step in flight ends).
    await Promise.race([s.running, new Promise((r) => setTimeout(r, CANCEL_WAIT_MS).unref())]);
    return s.progress;
  }

  /** Cancels the run's round if one runs, then removes the run and everything stored under it (delete.ts). */
  async delete(id: string): Promise<{ deleted: number }> {
    const s = this.state(id);
    if (this.deleting.has(id)) throw new Conflict(`run ${id} is being deleted`);
    // Held until its tombstone is stored: a run created under the id meanwhile would go with the last sweep.
    this.deleting.add(id);
    try {
      if (s.running) {
        s.cancel?.abort();
        await s.running;
      }
      this.runs.delete(id);
      unload(s);
      const deleted = await deleteRun(this.opts, s.record, s.progress?.round ?? (await this.lastPlannedRound(id)));
      this.log(`run ${id}: deleted (${deleted} objects)`);
      return { deleted };
    } finally {
      this.deleting.delete(id);
    }
  }

  /** Resolves when the run has no round in progress. */
  async idle(id: string): Promise<void> {
    await this.state(id).running;
  }

  private async lastPlannedRound(runId: string): Promise<number | undefined> {
    let last: number | undefined;
    for await (const o of this.opts.store.list(`runs/${runId}/rounds/`)) {
      const m = /rounds\/(\d+)\/plan\.json$/.exec(o.key);
      if (m) last = Math.max(last ?? -1, Number(m[1]));
    }
    return last;
  }

  private async unfinishedRound(runId: string): Promise<number | undefined> {
    const last = await this.lastPlannedRound(runId);
    if (last === undefined) return undefined;
    return (await this.opts.store.head(keys.roundDone(runId, last))) ? undefined : last;
  }

  private start(s: RunState, round: number): void {
    s.cancel = new AbortController();
    // Every device's wait listens for it: many devices are many listeners, not a leak.
    setMaxListeners(0, s.cancel.signal);
    s.running = runRound(s, this.opts, round)
      // A cancelled round resumes from its checkpoint, as a failed one does.
      .then(() => {
        if (s.progress?.phase === 'cancelled') unload(s);
      })
      .catch((e) => {
        if (s.progress) Object.assign(s.progress, { phase: 'failed', error: (e as Error).message });
        this.log(`run ${s.record.id} round ${round} failed: ${(e as Error).message}`);
        // The trainer holds the steps taken since the last checkpoint: the next trigger resumes from that
        // checkpoint instead, so no batch is trained twice.
        unload(s);
      })
      .finally(() => Object.assign(s, { running: undefined, cancel: undefined }));
  }
}
