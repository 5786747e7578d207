/**
 * The owner's policy on this device (core/wire/policy.ts): the minimum cut (MIN_CUT, default 2), the approved
 * model segments (owner endpoints here, kept in the device's own bucket, plus any listed at deploy time in
 * APPROVED_SEGMENTS) and the storage origins (STORAGE_ORIGINS). The server may read the policy to plan; only the
 * owner changes it.
 */
import { Hono } from 'hono';
import { parseJson } from '../../../core/json/parse.ts';
import { parseApproval, SHA256, type SegmentApproval } from '../../../core/wire/policy.ts';
import { ownerOnly, ownerOrServer } from './auth.ts';
import type { Env } from './env.ts';
import { deviceSettings } from './settings.ts';
import { approvalKey, loadPolicy } from './policy-store.ts';

export const approvals = new Hono<{ Bindings: Env }>();

approvals.get('/', ownerOrServer, async (c) => c.json(await loadPolicy(c.env)));

/**
 * Why the owner cannot change a segment's approval here: one listed in APPROVED_SEGMENTS is the deploy's, and would
 * go on deciding every round whatever an approval stored beside it said.
 */
function fixedAtDeploy(env: Env, sha256: string): string | undefined {
  if (!deviceSettings(env).approvedSegments.some((a) => a.sha256 === sha256)) return undefined;
  return `segment ${sha256} is approved in APPROVED_SEGMENTS, which decides its rounds: change or remove it there and deploy again`;
}

approvals.put('/:sha256', ownerOnly, async (c) => {
  const sha256 = c.req.param('sha256');
  if (!SHA256.test(sha256)) return c.json({ error: `'${sha256}' is not a hex SHA-256` }, 400);
  const fixed = fixedAtDeploy(c.env, sha256);
  if (fixed) return c.json({ error: fixed }, 409);
  let approval: SegmentApproval;
  try {
    approval = parseApproval({ ...(parseJson(await c.req.text(), 'approval') as object), sha256 }, deviceSettings(c.env).minCut);
  } catch (e) {
    return c.json({ error: (e as Error).message }, 400);
  }
  await c.env.SHARDS.put(approvalKey(sha256), JSON.stringify(approval));
  return c.json(approval, 201);
});

approvals.delete('/:sha256', ownerOnly, async (c) => {
  const sha256 = c.req.param('sha256');
  if (!SHA256.test(sha256)) return c.json({ error: `'${sha256}' is not a hex SHA-256` }, 400);
  const stored = await c.env.SHARDS.head(approvalKey(sha256));
  const fixed = fixedAtDeploy(c.env, sha256);
  if (fixed) {
    // One stored before the deploy listed the segment would decide again once the deploy's is gone.
    if (stored) await c.env.SHARDS.delete(approvalKey(sha256));
    return c.json({ error: `${fixed}${stored ? ' (the approval stored here is deleted)' : ''}` }, 409);
  }
  if (!stored) return c.json({ error: `no approval of segment ${sha256}` }, 404);
  await c.env.SHARDS.delete(approvalKey(sha256));
  return c.body(null, 204);
});
