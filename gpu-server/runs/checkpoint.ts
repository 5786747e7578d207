/**
 * The trainer's whole state in one safetensors object, written every checkpointSeconds and after each device:
 * adapters, head, AdamW moments and step, the batches of the current round already trained on, and GraB's per-device
 * updates. Checkpoints alternate between two keys and carry a sequence number; loading takes the newest that parses.
 * So even on storage that can leave a half-written object (s3rver does, when the writer dies mid-PUT), a server
 * killed at any moment resumes from a whole checkpoint, with no batch trained twice and none skipped.
 */
import * as tf from '@tensorflow/tfjs';
import { keys } from '../../core/storage/keys.ts';
import type { ObjectStore } from '../../core/storage/store.ts';
import { parseSafetensors, serializeSafetensors } from '../../core/tensors/safetensors.ts';
import type { Tensor } from '../../core/tensors/tensor.ts';
import type { Trainer } from '../train/trainer.ts';

export interface CheckpointMeta {
  /** Increases with every checkpoint written in the run. */
  seq: number;
  round: number;
  /** Whether the round finished (evaluated, adapter written). */
  complete: boolean;
  /** Activation keys of this round already trained on. */
  consumed: string[];
  /** Training losses of this round so far. */
  losses: number[];
  /** Devices of this round whose training is finished: a resumed round does not train, nor measure, them again. */
  finished?: string[];
  /** How each finished device ended, as the round's table shows it (a rollback stays one after a restart). */
  ended?: Record<string, { state: 'trained' | 'failed' | 'rolled-back'; error?: string }>;
}

/** The device in training and the adapters it started from: GraB's update for it is measured from these. */
export interface DeviceStart {
  device: string;
  adapters: Float32Array;
}

/** Read without blocking: on a GPU the reads queue behind the steps in flight. */
async function f32(t: tf.Tensor): Promise<Tensor> {
  return { dtype: 'F32', shape: t.shape, data: (await t.data()) as Float32Array };
}

/** The trainer's adapters, head and AdamW moments, as a checkpoint's tensors. */
async function trainerTensors(trainer: Trainer): Promise<Record<string, Tensor>> {
  const tensors: Record<string, Tensor> = {};
  for (const [i, v] of trainer.variables().entries()) {
    tensors[`param.${i}`] = await f32(v);
    const m = trainer.opt.m.get(v.name);
    const s = trainer.opt.v.get(v.name);
    if (m && s) {
      tensors[`adam.m.${i}`] = await f32(m);
      tensors[`adam.v.${i}`] = await f32(s);
    }
  }
  return tensors;
}

/** Puts trainerTensors back, and the step; a moment the tensors lack is dropped, as it did not exist then. */
function restoreTrainer(trainer: Trainer, tensors: ReadonlyMap<string, Tensor>, step: number, key: string): void {
  // Each value through a tensor of its own, let go once a variable holds it.
  const held = (t: Tensor, shape: number[], use: (x: tf.Tensor) => void) => tf.tidy(() => use(tf.tensor(t.data as Float32Array, shape)));
  trainer.variables().forEach((v, i) => {
    const p = tensors.get(`param.${i}`);
    if (!p || p.shape.join() !== v.shape.join()) throw new Error(`${key}: parameter ${i} does not match the run's adapters`);
    held(p, v.shape, (x) => v.assign(x));
    const m = tensors.get(`adam.m.${i}`);
    const s = tensors.get(`adam.v.${i}`);
    for (const [moments, t] of [
      [trainer.opt.m, m && s ? m : undefined],
      [trainer.opt.v, m && s ? s : undefined],
    ] as const) {
      const existing = moments.get(v.name);
      if (!t) {
        existing?.dispose();
        moments.delete(v.name);
      } else if (existing) held(t, v.shape, (x) => existing.assign(x));
      else held(t, v.shape, (x) => void moments.set(v.name, tf.variable(x, false)));
    }
  });
  trainer.opt.step = step;
}

export async function saveCheckpoint(
  store: ObjectStore,
  runId: string,
  trainer: Trainer,
  meta: CheckpointMeta,
  updates: ReadonlyMap<string, Float32Array>,
  start?: DeviceStart,
): Promise<void> {
  const tensors = await trainerTensors(trainer);
  for (const [device, u] of updates) tensors[`update.${device}`] = { dtype: 'F32', shape: [u.length], data: u };
  if (start) tensors[`start.${start.device}`] = { dtype: 'F32', shape: [start.adapters.length], data: start.adapters };
  await store.put(keys.checkpoint(runId, meta.seq % 2), serializeSafetensors(tensors, { meta: JSON.stringify(meta), step: String(trainer.opt.step) }));
}

export interface LoadedCheckpoint {
  meta: CheckpointMeta;
  updates: Map<string, Float32Array>;
  start?: DeviceStart;
}

/** Restores the trainer from the run's checkpoint; undefined when the run has none yet. */
export async function loadCheckpoint(
  store: ObjectStore,
  runId: string,
  trainer: Trainer,
  log: (m: string) => void = () => {},
): Promise<LoadedCheckpoint | undefined> {
  let newest: { key: string; file: ReturnType<typeof parseSafetensors>; seq: number } | undefined;
  for (const slot of [0, 1]) {
    const key = keys.checkpoint(runId, slot);
    const bytes = await store.get(key);
    if (!bytes) continue;
    try {
      const file = parseSafetensors(bytes, key);
      const seq = JSON.parse(file.metadata.meta).seq as number;
      if (!newest || seq > newest.seq) newest = { key, file, seq };
    } catch (e) {
      log(`ignoring checkpoint ${key}: ${(e as Error).message}`);
    }
  }
  if (!newest) return undefined;
  const { tensors, metadata } = newest.file;
  restoreTrainer(trainer, tensors, Number(metadata.step), newest.key);
  const updates = new Map<string, Float32Array>();
  let start: DeviceStart | undefined;
  for (const [name, t] of tensors) {
    if (name.startsWith('update.')) updates.set(name.slice('update.'.length), t.data as Float32Array);
    if (name.startsWith('start.')) start = { device: name.slice('start.'.length), adapters: t.data as Float32Array };
  }
  return { meta: JSON.parse(metadata.meta), updates, start };
}

/** What the loss-rise rollback kept of a device's start: its round, the device and the held-out loss then. */
export interface KeptMark {
  round: number;
  device: string;
  loss: number;
}

/** Keeps the trainer's state as it is, before `mark.device`'s first batch: a round cut while it trains still rolls it back. */
export async function saveGuardMark(store: ObjectStore, runId: string, trainer: Trainer, mark: KeptMark): Promise<void> {
  const bytes = serializeSafetensors(await trainerTensors(trainer), { mark: JSON.stringify(mark), step: String(trainer.opt.step) });
  await store.put(keys.guardMark(runId, mark.device), bytes);
}

/**
 * Puts the state kept before `device`'s first batch of `round` back into the trainer, and gives the held-out loss
 * measured then; undefined, the trainer untouched, when none is kept for it.
 */
export async function loadGuardMark(store: ObjectStore, runId: string, trainer: Trainer, round: number, device: string): Promise<number | undefined> {
  const key = keys.guardMark(runId, device);
  const bytes = await store.get(key);
  if (!bytes) return undefined;
  const { tensors, metadata } = parseSafetensors(bytes, key);
  const mark = JSON.parse(metadata.mark) as KeptMark;
  if (mark.round !== round || mark.device !== device) return undefined;
  restoreTrainer(trainer, tensors, Number(metadata.step), key);
  return mark.loss;
}
