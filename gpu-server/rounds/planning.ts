/**
 * A round's first phase: plan it (which devices, in which order, with which cached activations), or read the plan of
 * the round being resumed. Planning puts in storage what devices fetch: each cut's segment (content-addressed) and,
 * for families devices hold no tokenizer of, the model's tokenizer.json.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256Hex } from '../../core/auth/signing.ts';
import { familyOf, type Model } from '../../core/model/family.ts';
import { deviceSegment } from '../../core/onnx/segment.ts';
import { getJson, putJson } from '../../core/storage/json.ts';
import { keys } from '../../core/storage/keys.ts';
import type { ObjectStore } from '../../core/storage/store.ts';
import { TOKENIZER_FILE } from '../../core/tokenizer/hf.ts';
import { planRound, type DeviceView, type RoundPlan } from '../runs/plan.ts';
import type { RoundProgress } from '../runs/types.ts';
import { deviceApi, type ResolvedRoundOptions } from './context.ts';
import { abortable } from './feed.ts';
import { type Loaded, type RunState, type SegmentRef } from '../runs/state.ts';

/** Content-addressed: what is stored under a hash never changes, so an existing object is left as it is. */
async function putOnce(store: ObjectStore, key: string, bytes: Uint8Array, type?: string): Promise<void> {
  if (!(await store.head(key))) await store.put(key, bytes, type);
}

/** The model folder's tokenizer.json in storage, for devices that do not hold the family's tokenizer; null for GPT-2. */
export async function tokenizerRef(s: RunState, opts: ResolvedRoundOptions, model: Model): Promise<RunState['tokenizerRef']> {
  if (s.tokenizerRef !== undefined) return s.tokenizerRef;
  if (familyOf(model.config).builtinTokenizer) return (s.tokenizerRef = null);
  const bytes = await readFile(join(s.record.spec.model, TOKENIZER_FILE));
  const sha256 = await sha256Hex(bytes);
  await putOnce(opts.store, keys.tokenizer(sha256), bytes, 'application/json');
  const { bos, eos } = familyOf(model.config).specialTokens(model.config);
  return (s.tokenizerRef = { sha256, bos, eos });
}

/**
 * The device's model segment (and token table, and external weights) in storage, exported once per cut and weight
 * type. The export itself is cached, not its result: devices are planned all at once, and twenty devices at one cut
 * must not export (and hold) twenty copies.
 */
function segment(s: RunState, opts: ResolvedRoundOptions, model: Model, cut: number, weights: 'fp32' | 'int8'): Promise<SegmentRef> {
  const id = `${cut}:${weights}`;
  let seg = s.segments.get(id);
  if (!seg) {
    seg = (async () => {
      const exported = await deviceSegment(model, cut, weights);
      await putOnce(opts.store, keys.devicePrefix(exported.sha256, cut), exported.onnx);
      if (exported.tokenTable) await putOnce(opts.store, keys.tokenTable(exported.tokenTable.sha256), exported.tokenTable.bytes);
      if (exported.weights) await putOnce(opts.store, keys.segmentWeights(exported.weights.sha256), exported.weights.bytes);
      return { modelSha256: exported.sha256, tokenTableSha256: exported.tokenTable?.sha256, weightsSha256: exported.weights?.sha256 };
    })();
    s.segments.set(id, seg);
    // A failed export is tried again by the next round, not remembered.
    seg.catch(() => s.segments.delete(id));
  }
  return seg;
}

/** The round's plan, made or read back; undefined when the round was cancelled while planning (nothing is written). */
export async function planOrResume(s: RunState, opts: ResolvedRoundOptions, { model, trainer }: Loaded, round: number): Promise<RoundPlan | undefined> {
  const { record } = s;
  const { spec } = record;
  // Resumed rounds need it too: their devices are asked to start again.
  const tokenizer = await tokenizerRef(s, opts, model);
  const existing = await getJson<RoundPlan>(opts.store, keys.plan(record.id, round));
  if (existing) return existing;
  const views: DeviceView[] = await Promise.all(
    spec.devices.map(async (d) => {
      const cut = record.cuts[d.id].cut;
      const seg = await segment(s, opts, model, cut, d.profile.weights);
      const device = deviceApi(s, opts, d.id);
      // A device slow to answer holds planning for limits.callSeconds at most, and a cancel not at all.
      const asked = <T>(p: Promise<T>) => abortable(p, s.cancel?.signal).catch((e: Error) => e);
      const [shards, policy] = await Promise.all([asked(device.shards()), asked(device.policy())]);
      return {
        id: d.id,
        cut,
        ...seg,
        tokenizer: tokenizer ?? undefined,
        shards,
        policy,
      };
    }),
  );
  // Cancelled, the answers cut short would plan devices out: no plan, and the round starts no device.
  if (s.cancel?.signal.aborted) return undefined;
  const plan = await planRound(opts.store, record.id, spec, round, views, model.config.padTokenId, s.updates);
  if (plan.order.length === 0) throw new Error(`no device can take part in round ${round}: ${JSON.stringify(plan.skipped)}`);
  if (record.totalSteps === undefined) {
    // The learning-rate schedule spans the whole run, as many rounds as planned of this round's size.
    record.totalSteps = spec.training.rounds * Object.values(plan.devices).reduce((a, d) => a + d.batches, 0);
    trainer.spec.schedule.totalSteps = record.totalSteps;
    await putJson(opts.store, keys.run(record.id), record);
  }
  await putJson(opts.store, keys.plan(record.id, round), plan);
  return plan;
}

/** The round's progress as the plan sets it out: every device waiting, or skipped with the reason. */
export function progressFor(s: RunState, plan: RoundPlan, progress: RoundProgress): void {
  for (const [id, reason] of Object.entries(plan.skipped))
    progress.devices[id] = { cut: s.record.cuts[id].cut, state: 'skipped', reused: false, batches: 0, trained: 0, bytes: 0, error: reason };
  for (const id of plan.order) {
    const d = plan.devices[id];
    progress.devices[id] = { cut: d.cut, state: 'waiting', reused: d.sourceRound !== plan.round, batches: d.batches, trained: 0, bytes: 0 };
  }
  progress.order = plan.order;
  progress.batchesTotal = plan.order.reduce((a, id) => a + plan.devices[id].batches, 0);
}
