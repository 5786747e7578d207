/**
 * The round's training phase: device after device in the plan's order (or, interleaved, one batch of each device in
 * turn), each device's batches as the poller verifies them, checkpointing as it goes. A resumed round skips what its
 * checkpoint says was trained; a cancelled one stops at the next batch boundary with a checkpoint of what it trained.
 */
import { keys } from '../../core/storage/keys.ts';
import { describeDefence } from '../../core/privacy/defence.ts';
import { deviceBatchOrder, turns } from '../ordering/turns.ts';
import type { RoundPlan } from '../runs/plan.ts';
import { loadGuardMark, saveCheckpoint, saveGuardMark, type CheckpointMeta, type DeviceStart } from '../runs/checkpoint.ts';
import type { RoundProgress } from '../runs/types.ts';
import type { PendingStep } from '../train/pending-step.ts';
import type { AdapterWeights } from '../../core/peft/adapter.ts';
import { deviceApi, type ResolvedRoundOptions } from './context.ts';
import { type Loaded, type RunState } from '../runs/state.ts';
import { untrustedText } from '../../core/wire/untrusted.ts';
import { calibrateCut, uploadNormBound } from './bounds.ts';
import { DeviceGuard, type GuardMark } from './guard.ts';
import { abortable, activationFeed, DeviceRoundFailed, maxBatchBytes, type VerifiedBatch } from './feed.ts';

export interface Training {
  losses: number[];
  /** Time the server spent in steps, and the phase's wall time: the rest is time it waited for devices. */
  trainMs: number;
  wallMs: number;
  cancelled: boolean;
  /** A cancelled round's adapter: without the batches of the device in training, not yet measured (guard.ts). */
  adapter?: AdapterWeights;
}

export async function trainDevices(
  s: RunState,
  opts: ResolvedRoundOptions,
  { model, trainer, tokenizer, evalRows }: Loaded,
  plan: RoundPlan,
  progress: RoundProgress,
  startDevice: (id: string) => Promise<void>,
  askedAt: ReadonlyMap<string, number>,
  startedAt: number,
): Promise<Training> {
  const { record } = s;
  const { spec } = record;
  const { round } = plan;
  const previous = s.checkpoint?.round === round ? s.checkpoint : undefined;
  const consumed = new Set(previous?.consumed ?? []);
  const losses = [...(previous?.losses ?? [])];
  const finished = new Set(previous?.finished ?? []);
  const ended: NonNullable<CheckpointMeta['ended']> = { ...previous?.ended };
  let current: DeviceStart | undefined = previous ? s.deviceStart : undefined;
  let seq = s.checkpoint?.seq ?? 0;
  // Checkpoints cost a readback of the adapters and optimizer state and a PUT: at most one per checkpointSeconds
  // within a device's batches, and one after each device.
  const checkpointMs = opts.checkpointSeconds * 1000;
  let lastCheckpoint = performance.now();
  const checkpoint = (complete: boolean) => {
    lastCheckpoint = performance.now();
    s.checkpoint = { seq: ++seq, round, complete, consumed: [...consumed], losses, finished: [...finished], ended };
    return saveCheckpoint(opts.store, record.id, trainer, s.checkpoint, s.updates, current);
  };
  const cancelled = () => s.cancel?.signal.aborted === true;
  progress.batchesTrained = consumed.size;
  progress.phase = 'training';
  let trainMs = 0;
  const phaseStart = performance.now();
  const todo = previous?.complete ? [] : plan.order;
  // The bound on what a device's hidden states may be, per cut, from the model itself.
  for (const cut of new Set(todo.map((id) => plan.devices[id].cut)))
    if (!s.calibrations.has(cut)) s.calibrations.set(cut, await calibrateCut(trainer, tokenizer, model.config.padTokenId, cut));
  /** A batch of a device never trained on: counted, named in the device table (the first) and the round's list, logged. */
  const refuse = (device: RoundProgress['devices'][string], key: string, reason: string) => {
    device.refused = (device.refused ?? 0) + 1;
    device.error ??= `refused ${key.split('/').pop()}: ${reason}`;
    progress.rejected.push(`${key}: ${reason}`);
    opts.log?.(`run ${record.id}: rejected ${key}: ${reason}`);
  };
  /** The keys of a device's batches already trained on in this round (before a restart, or so far). */
  const consumedOf = (id: string) => [...consumed].filter((k) => k.startsWith(keys.activations(record.id, id, plan.devices[id].sourceRound)));
  for (const id of todo.filter((d) => finished.has(d))) {
    // Trained before the server was restarted: its batches and its GraB update are in the checkpoint.
    Object.assign(progress.devices[id], { ...(ended[id] ?? { state: 'trained' }), trained: consumedOf(id).length });
  }
  const pending = todo.filter((d) => !finished.has(d));
  // A device cut mid-way has trained what its consumed batches say, before this attempt too.
  for (const id of pending) progress.devices[id].trained = consumedOf(id).length;

  // One step in flight: the next batch's step is issued before the last one's loss is read, so a GPU never waits for
  // JavaScript. A checkpoint first waits for the step in flight, so what it saves is what it lists.
  let inFlight: { key: string; step: PendingStep; device: RoundProgress['devices'][string] } | undefined;
  const settle = async () => {
    if (!inFlight) return;
    const { key, step, device } = inFlight;
    inFlight = undefined;
    const t0 = performance.now();
    // On CPU backends a step runs synchronously and its result is ready at once: without this turn of the event
    // loop, API requests and prefetch downloads would wait until the feed itself has to wait.
    await new Promise((resolve) => setImmediate(resolve));
    const { loss, applied } = await step.result();
    trainMs += performance.now() - t0;
    consumed.add(key);
    // A batch read was uploaded: the count of uploads (listed every few seconds) is never behind what trained.
    device.uploaded = Math.max(device.uploaded ?? 0, device.trained + (device.refused ?? 0) + 1);
    if (!applied) {
      // The step guard kept the adapters as they were: the batch counts as refused, never as trained.
      refuse(device, key, "its step's loss, gradient or update was not finite; skipped, the adapters unchanged");
      return;
    }
    losses.push(loss);
    device.trained++;
    progress.batchesTrained++;
    progress.lastLoss = loss;
    progress.losses.push({ ms: Math.round(performance.now() - startedAt), loss });
  };
  const train = async (batch: VerifiedBatch, id: string) => {
    const t0 = performance.now();
    const step = trainer.step(batch);
    trainMs += performance.now() - t0;
    await settle();
    inFlight = { key: batch.key, step, device: progress.devices[id] };
    if (!cancelled() && performance.now() - lastCheckpoint >= checkpointMs) {
      await settle();
      await checkpoint(false);
    }
  };
  /** A device's verified batches, in its own seeded order, without those trained before a restart. */
  const feed = (id: string, prefetch = opts.prefetch) => {
    const d = plan.devices[id];
    const dp = progress.devices[id];
    const shuffle = (batches: unknown[]) => deviceBatchOrder(batches.length, { seed: spec.training.seed, round, device: id });
    return activationFeed(
      opts.store,
      {
        runId: record.id,
        deviceId: id,
        round: d.sourceRound,
        cut: d.cut,
        nEmbd: model.config.nEmbd,
        // Generation: a next-token id (or IGNORE_INDEX) per position; classification: a class per row.
        labels: spec.task.kind === 'generation' ? { perToken: true, classes: model.config.vocabSize } : { perToken: false, classes: spec.task.labels.length },
        batches: d.batches,
        maxBatchBytes: maxBatchBytes(spec.training.batchSize, spec.training.seqLen, model.config.nEmbd),
        modelSha256: d.modelSha256,
        dtype: spec.training.dtype,
        rows: d.rows,
        batchSize: spec.training.batchSize,
        seqLen: Math.min(spec.training.seqLen, model.config.nPositions),
        normBound: (defence, clip) => uploadNormBound(s.calibrations.get(d.cut)!, defence, clip, model.config.nEmbd),
      },
      {
        prefetch,
        pollMs: opts.pollMs,
        // Counted from when the device was asked, not from its turn: stalling devices, all asked at the start of a
        // pipelined round, cost it limits.uploadSeconds together, not each in turn.
        deadlineMs: spec.limits.uploadSeconds * 1000,
        askedAt: askedAt.get(id),
        signal: s.cancel?.signal,
        order: shuffle,
        skip: consumed,
        deviceStatus: d.sourceRound === round ? () => deviceApi(s, opts, id).roundStatus(record.id, round) : undefined,
        // A reason may quote what the device wrote: bounded and escaped once, here, for the API, log and dashboard.
        onReject: (key, why) => refuse(dp, key, untrustedText(why)),
        onManifest: (m) => Object.assign(dp, { bytes: m.batches.reduce((a, b) => a + b.bytes, 0), defence: describeDefence(m.defence) }),
      },
    );
  };
  /** A device's part of the round ended: its state, GraB's update, a checkpoint. A cancelled one stays unfinished. */
  const finish = async (id: string, failure?: unknown) => {
    await settle();
    const dp = progress.devices[id];
    if (cancelled()) {
      // Triggering the round again trains its remaining batches.
      dp.state = 'waiting';
      if (mark) guard!.drop(mark);
      mark = undefined;
      return;
    }
    const rollback = mark?.device === id ? await guard!.settle(mark) : undefined;
    mark = undefined;
    if (rollback) {
      Object.assign(dp, { state: 'rolled-back', error: rollback });
      opts.log?.(`run ${record.id}: device ${id} ${rollback}`);
    } else if (failure === undefined) dp.state = dp.trained === 0 && dp.refused ? 'failed' : 'trained';
    else if (failure instanceof DeviceRoundFailed) {
      Object.assign(dp, { state: 'failed', error: failure.message });
      opts.log?.(`run ${record.id}: ${failure.message}`);
    } else throw failure;
    if (current?.device === id)
      s.updates.set(
        id,
        trainer.flatAdapters().map((x, i) => x - current!.adapters[i]),
      );
    finished.add(id);
    ended[id] = { state: dp.state as 'trained' | 'failed' | 'rolled-back', ...(dp.error ? { error: dp.error } : {}) };
    current = undefined;
    if (dp.trained > 0 || rollback) await checkpoint(false);
    // A cancel ends this call too: a device that stalls its answer holds no cancelled round. A failed one is not asked.
    if (plan.devices[id].sourceRound === round && failure === undefined)
      dp.forwardMs = (await abortable(deviceApi(s, opts, id).roundStatus(record.id, round), s.cancel?.signal).catch(() => undefined))?.forwardMs;
  };
  const stopAndWait = opts.schedule === 'stop-and-wait';
  const guard = DeviceGuard.of(trainer, tokenizer, spec, evalRows);
  let mark: GuardMark | undefined;
  /** The mark kept in storage for `id`, taken back (guard.ts resume), or undefined where none is kept. */
  const keptMark = (id: string) => guard!.resume(id, () => loadGuardMark(opts.store, record.id, trainer, round, id));

  const batchOrder = spec.training.batchOrder;
  let share = opts.prefetch;
  if (batchOrder === 'interleaved') {
    // Stop-and-wait: the devices compute first, then the server trains.
    if (stopAndWait) for (const id of pending) await startDevice(id);
    // The rotation comes back to a device only after a batch of each other one: its feed needs a share of the
    // prefetch window (one batch at least), not all of it, so the batches downloaded ahead stay at the window's size
    // until the devices outnumber it.
    const live = pending.filter((id) => progress.devices[id].state !== 'failed').length;
    share = Math.max(1, Math.floor(opts.prefetch / Math.max(1, live)));
  }
  /** The devices whose batches were opened and have not ended. */
  const started = new Set<string>();
  /** A device's turn comes (by device: after the one before it; interleaved: all at the start). */
  const open = async (id: string) => {
    if (cancelled()) return undefined;
    if (stopAndWait && batchOrder === 'by-device') await startDevice(id);
    const dp = progress.devices[id];
    if (dp.state === 'failed') {
      // Batches it trained before the round was cut are measured all the same: failing to start again keeps none.
      if (guard && consumedOf(id).length > 0) {
        mark = await keptMark(id);
        await finish(id, new DeviceRoundFailed(dp.error ?? `device ${id} failed to start round ${round}`));
      }
      return undefined;
    }
    dp.state = 'training';
    started.add(id);
    // GraB's update for this device is measured from the adapters it started from, which a resumed round reads
    // from its checkpoint rather than from the adapters as they are now.
    if (spec.ordering.kind === 'grab' && current?.device !== id) current = { device: id, adapters: trainer.flatAdapters() };
    if (guard && consumedOf(id).length === 0) {
      mark = await guard.mark(id);
      // Kept in storage too: a round cut while the device trains still rolls it back when it resumes.
      await saveGuardMark(opts.store, record.id, trainer, { round, device: id, loss: mark.loss });
    } else if (guard) mark = await keptMark(id);
    return feed(id, share);
  };
  try {
    for await (const turn of turns(pending, batchOrder, open)) {
      if ('batch' in turn) await train(turn.batch, turn.device);
      else {
        started.delete(turn.device);
        await finish(turn.device, turn.failure);
      }
      if (cancelled()) break;
    }
    await settle();
  } catch (e) {
    // A round that fails lets go of the mark's copy of the trainer.
    if (mark) guard!.drop(mark);
    throw e;
  }
  let unmeasured: AdapterWeights | undefined;
  if (cancelled()) {
    // The devices cut short: waiting, to train their remaining batches when the round is triggered again.
    for (const id of started) await finish(id);
    // What the cancelled round hands out leaves out the batches of the device cut mid-way (in this attempt or an
    // earlier one): none of them is measured yet. Its mark is in storage from its first batch on.
    const cut = guard && pending.find((id) => !finished.has(id) && consumedOf(id).length > 0);
    const kept = cut && (await keptMark(cut));
    if (kept) {
      unmeasured = guard!.atMark(kept, () => trainer.exportAdapter());
      guard!.drop(kept);
    }
    if (pending.some((id) => progress.devices[id].trained > 0)) await checkpoint(false);
  }
  const wallMs = performance.now() - phaseStart;
  if (cancelled()) return { losses, trainMs, wallMs, cancelled: true, adapter: unmeasured };
  if (!previous?.complete) await checkpoint(true);
  // The round is whole: no device of it resumes, and the marks kept for that (a trainer state each) go.
  if (guard) for (const id of plan.order) await opts.store.delete(keys.guardMark(record.id, id));
  return { losses, trainMs, wallMs, cancelled: false };
}
