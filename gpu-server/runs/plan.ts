/**
 * Round planning: which devices take part, in which order, at which cut, and whether a device must compute its
 * activations again or the server reuses the ones it stored in an earlier round (the prefix is frozen, so the same
 * shard, segment and tokenization give the same activations: the activation cache).
 */
import { sha256Hex } from '../../core/auth/signing.ts';
import { getJson } from '../../core/storage/json.ts';
import { keys } from '../../core/storage/keys.ts';
import type { ObjectStore } from '../../core/storage/store.ts';
import { AnswerError } from '../../core/wire/answers.ts';
import type { ShardSummary } from '../../core/wire/device-client.ts';
import { segmentRefusal, type DevicePolicy, type SpecialTokenIds } from '../../core/wire/policy.ts';
import { orderPresent } from '../ordering/ordering.ts';
import type { RunSpec } from './spec.ts';
import type { PlannedDevice, RoundPlan } from './types.ts';

export type { RoundPlan } from './types.ts';

export interface DeviceView {
  id: string;
  cut: number;
  modelSha256: string;
  tokenTableSha256?: string;
  weightsSha256?: string;
  /** The tokenizer.json devices fetch (families whose tokenizer devices do not hold), and its start and end tokens. */
  tokenizer?: { sha256: string } & SpecialTokenIds;
  /** The device's shard listing, or why it could not be had. */
  shards: ShardSummary[] | Error;
  /** What the device's owner allows, or why it could not be had. */
  policy: DevicePolicy | Error;
}

/**
 * How devices encode rows (workers/device/src/encode.ts), as a version: activations a device stored under another
 * encoding are not reused. 2: classification rows whole, then cut from the right; generation at the approved length.
 */
const DEVICE_ENCODING = 2;

export async function activationFingerprint(spec: RunSpec, d: DeviceView & { shards: ShardSummary[] }, padTokenId: number): Promise<string> {
  const shards = [...d.shards].sort((a, b) => a.name.localeCompare(b.name)).map((s) => [s.name, s.rows, s.etag]);
  const { batchSize, seqLen, dtype } = spec.training;
  const tokenizer = d.tokenizer?.sha256 ?? 'r50k_base';
  return sha256Hex(
    JSON.stringify({
      shards,
      model: d.modelSha256,
      table: d.tokenTableSha256 ?? null,
      weights: d.weightsSha256 ?? null,
      cut: d.cut,
      batchSize,
      seqLen,
      dtype,
      task: spec.task.kind,
      labels: spec.task.labels,
      padTokenId,
      tokenizer,
      specialTokens: d.tokenizer ? { bos: d.tokenizer.bos, eos: d.tokenizer.eos } : null,
      encoding: DEVICE_ENCODING,
    }),
  );
}

export async function planRound(
  store: ObjectStore,
  runId: string,
  spec: RunSpec,
  round: number,
  views: DeviceView[],
  padTokenId: number,
  previousUpdates: ReadonlyMap<string, Float32Array>,
): Promise<RoundPlan> {
  const devices: Record<string, PlannedDevice> = {};
  const skipped: Record<string, string> = {};
  const previous: RoundPlan[] = [];
  for (let r = 0; r < round; r++) {
    const p = await getJson<RoundPlan>(store, keys.plan(runId, r));
    if (p) previous.push(p);
  }
  for (const v of views) {
    if (v.shards instanceof Error) {
      skipped[v.id] = unusable(v.shards);
      continue;
    }
    if (v.policy instanceof Error) {
      skipped[v.id] = unusable(v.policy);
      continue;
    }
    // The device would refuse it anyway; saying why here tells the operator what its owner must approve.
    const refusal = segmentRefusal(v.policy, {
      sha256: v.modelSha256,
      cut: v.cut,
      tokenTable: v.tokenTableSha256,
      weights: v.weightsSha256,
      tokenizer: v.tokenizer,
      task: spec.task.kind,
      seqLen: spec.training.seqLen,
    });
    if (refusal) {
      skipped[v.id] = `refused by its owner: ${refusal}`;
      continue;
    }
    const usable = v.shards.filter((s) => (s.task ?? 'classification') === spec.task.kind && s.labels.join('\n') === spec.task.labels.join('\n'));
    const rows = usable.reduce((a, s) => a + s.rows, 0);
    if (rows === 0) {
      skipped[v.id] =
        spec.task.kind === 'generation' ? 'holds no generation shard' : `holds no shard with the task's labels ${JSON.stringify(spec.task.labels)}`;
      continue;
    }
    // Claimed counts decide the upload URLs, the batches and the learning-rate schedule: bounded before any is made.
    const declared = spec.devices.find((d) => d.id === v.id)?.rows;
    if (rows > spec.limits.maxRowsPerDevice) {
      skipped[v.id] = `claims ${rows} rows, more than the run allows a device (limits.maxRowsPerDevice ${spec.limits.maxRowsPerDevice})`;
      continue;
    }
    if (declared !== undefined && rows > declared) {
      skipped[v.id] = `claims ${rows} rows, more than its owner declared (devices[].rows ${declared})`;
      continue;
    }
    const fingerprint = await activationFingerprint(spec, { ...v, shards: usable }, padTokenId);
    let sourceRound = round;
    for (const p of previous) {
      const e = p.devices[v.id];
      if (e?.fingerprint === fingerprint && (await store.head(keys.activationManifest(runId, v.id, e.sourceRound)))) {
        sourceRound = e.sourceRound;
        break;
      }
    }
    const shards = usable.map((s) => s.name).sort();
    devices[v.id] = {
      cut: v.cut,
      modelSha256: v.modelSha256,
      tokenTableSha256: v.tokenTableSha256,
      weightsSha256: v.weightsSha256,
      shards,
      rows,
      batches: Math.ceil(rows / spec.training.batchSize),
      fingerprint,
      sourceRound,
    };
  }
  const ids = Object.keys(devices);
  const last = previous.at(-1);
  // GraB balances the previous round's updates; devices that have none yet (new, or skipped) come last.
  const order = orderPresent(spec.ordering, {
    round,
    devices: ids,
    seed: spec.training.seed,
    previous: last ? { order: last.order, updates: previousUpdates } : undefined,
  });
  return { round, order, devices, skipped, createdAt: new Date().toISOString() };
}

/** Why a device's answer could not be used: it did not answer, or it answered what no honest device would. */
function unusable(e: Error): string {
  return e instanceof AnswerError ? `answered wrongly: ${e.message}` : `unreachable: ${e.message}`;
}
