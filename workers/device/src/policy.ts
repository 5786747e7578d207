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

approvals.put('/:sha256', ownerOnly, async (c) => {
  const sha256 = c.req.param('sha256');
  if (!SHA256.test(sha256)) return c.json({ error: `'${sha256}' is not a hex SHA-256` }, 400);
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
  if (!(await c.env.SHARDS.head(approvalKey(sha256)))) return c.json({ error: `no approval of segment ${sha256}` }, 404);
  await c.env.SHARDS.delete(approvalKey(sha256));
  return c.body(null, 204);
});
