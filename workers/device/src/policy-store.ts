/** The owner's policy as stored in the device's bucket, and what it says of a round (policy.ts serves it). */
import { defenceFor, segmentRefusal, storedApproval, urlRefusal, type DevicePolicy, type SegmentApproval } from '../../../core/wire/policy.ts';
import type { Defence } from '../../../core/privacy/defence.ts';
import type { RoundRequest } from '../../../core/wire/round.ts';
import type { Bindings } from './bindings.ts';
import { deviceSettings } from './settings.ts';
import { groupsKey } from './groups-store.ts';

export const approvalKey = (sha256: string) => `approvals/${sha256}.json`;

/**
 * The owner's policy: APPROVED_SEGMENTS, then the approvals stored here. One stored for a segment that
 * APPROVED_SEGMENTS also lists (stored before the deploy listed it) decides nothing: it is set apart as `overridden`,
 * for its owner to see and delete, never listed as an approval.
 */
export async function loadPolicy(env: Bindings): Promise<DevicePolicy & { overridden: SegmentApproval[] }> {
  const { minCut, approvedSegments, defence } = deviceSettings(env);
  const approvals: SegmentApproval[] = [...approvedSegments];
  const overridden: SegmentApproval[] = [];
  let cursor: string | undefined;
  do {
    const page = await env.SHARDS.list({ prefix: 'approvals/', cursor });
    for (const o of page.objects) {
      const stored = await env.SHARDS.get(o.key);
      if (!stored) continue;
      const approval = storedApproval(await stored.json());
      (approvedSegments.some((a) => a.sha256 === approval.sha256) ? overridden : approvals).push(approval);
    }
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  return { minCut, approvals, defence, overridden };
}

/** The least length of DEFENCE_SECRET: the key of the defence's noise, which no one else may guess. */
export const DEFENCE_SECRET_CHARS = 32;

/**
 * What the owner's policy says of the request's segment: why it is refused (or undefined), and the defence its
 * uploads carry. The defence comes from the owner alone (the approval, else DEFENCE): no request can lower it.
 */
export async function roundPolicy(env: Bindings, request: Omit<RoundRequest, 'uploads'>): Promise<{ refusal?: string; defence: Defence }> {
  const policy = await loadPolicy(env);
  const defence = defenceFor(policy, request.model.sha256);
  const refusal =
    segmentRefusal(policy, {
      sha256: request.model.sha256,
      cut: request.cut,
      tokenTable: request.tokenTable?.sha256,
      weights: request.weights?.sha256,
      tokenizer: request.tokenizer,
      task: request.task,
      seqLen: request.seqLen,
    }) ??
    (defence.mechanism !== 'none' && (env.DEFENCE_SECRET ?? '').length < DEFENCE_SECRET_CHARS
      ? `this device's owner set a defence but no DEFENCE_SECRET of ${DEFENCE_SECRET_CHARS}+ characters (wrangler secret put DEFENCE_SECRET; keep it: a new one lets a server average old and new uploads)`
      : undefined) ??
    (defence.mechanism === 'groups' && !(await env.SHARDS.head(groupsKey(defence.groups)))
      ? `this device's owner set the groups defence with groups ${defence.groups}, which this device does not hold (PUT /groups with the table)`
      : undefined);
  return { refusal, defence };
}

/**
 * Why this device's owner does not allow the request to run, or undefined: checked before a round starts (nothing
 * is fetched before). The segment is checked again before each piece of a round, so a revoked approval stops it.
 */
export async function refusalOf(env: Bindings, request: RoundRequest): Promise<string | undefined> {
  return (await roundPolicy(env, request)).refusal ?? urlRefusal(deviceSettings(env).storageOrigins, request);
}
