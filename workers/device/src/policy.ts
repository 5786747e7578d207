/**
 * The owner's policy on this device (core/wire/policy.ts): the minimum cut (MIN_CUT, default 2), the approved
 * model segments (owner endpoints here, kept in the device's own bucket, plus any listed at deploy time in
 * APPROVED_SEGMENTS) and the storage origins (STORAGE_ORIGINS). The server may read the policy to plan; only the
 * owner changes it.
 */
import { Hono } from 'hono';
import { defenceFor, parseApproval, segmentRefusal, SHA256, urlRefusal, type DevicePolicy, type SegmentApproval } from '../../../core/wire/policy.ts';
import type { Defence } from '../../../core/privacy/defence.ts';
import type { RoundRequest } from '../../../core/wire/round.ts';
import { ownerOnly, ownerOrServer } from './auth.ts';
import type { Env } from './env.ts';
import { deviceSettings } from './settings.ts';

const key = (sha256: string) => `approvals/${sha256}.json`;

export async function loadPolicy(env: Env): Promise<DevicePolicy> {
  const { minCut, approvedSegments, defence } = deviceSettings(env);
  const approvals: SegmentApproval[] = [...approvedSegments];
  let cursor: string | undefined;
  do {
    const page = await env.SHARDS.list({ prefix: 'approvals/', cursor });
    for (const o of page.objects) {
      const stored = await env.SHARDS.get(o.key);
      // Checked against today's MIN_CUT when a round names it (segmentRefusal), not against the one it was stored under.
      if (stored) approvals.push(parseApproval(await stored.json(), 0));
    }
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  return { minCut, approvals, defence };
}

/** The least length of DEFENCE_SECRET: the key of the defence's noise, which no one else may guess. */
export const DEFENCE_SECRET_CHARS = 32;

/**
 * What the owner's policy says of the request's segment: why it is refused (or undefined), and the defence its
 * uploads carry. The defence comes from the owner alone (the approval, else DEFENCE): no request can lower it.
 */
export async function roundPolicy(env: Env, request: Omit<RoundRequest, 'uploads'>): Promise<{ refusal?: string; defence: Defence }> {
  const policy = await loadPolicy(env);
  const defence = defenceFor(policy, request.model.sha256);
  const refusal =
    segmentRefusal(policy, {
      sha256: request.model.sha256,
      cut: request.cut,
      tokenTable: request.tokenTable?.sha256,
      weights: request.weights?.sha256,
      tokenizer: request.tokenizer?.sha256,
      task: request.task,
    }) ??
    (defence.mechanism !== 'none' && (env.DEFENCE_SECRET ?? '').length < DEFENCE_SECRET_CHARS
      ? `this device's owner set a defence but no DEFENCE_SECRET of ${DEFENCE_SECRET_CHARS}+ characters (wrangler secret put DEFENCE_SECRET; keep it: a new one lets a server average old and new uploads)`
      : undefined);
  return { refusal, defence };
}

/**
 * Why this device's owner does not allow the request to run, or undefined: checked before a round starts (nothing
 * is fetched before). The segment is checked again before each piece of a round, so a revoked approval stops it.
 */
export async function refusalOf(env: Env, request: RoundRequest): Promise<string | undefined> {
  return (await roundPolicy(env, request)).refusal ?? urlRefusal(deviceSettings(env).storageOrigins, request);
}

export const approvals = new Hono<{ Bindings: Env }>();

approvals.get('/', ownerOrServer, async (c) => c.json(await loadPolicy(c.env)));

approvals.put('/:sha256', ownerOnly, async (c) => {
  const sha256 = c.req.param('sha256');
  if (!SHA256.test(sha256)) return c.json({ error: `'${sha256}' is not a hex SHA-256` }, 400);
  let approval: SegmentApproval;
  try {
    approval = parseApproval({ ...(await c.req.json()), sha256 }, deviceSettings(c.env).minCut);
  } catch (e) {
    return c.json({ error: (e as Error).message }, 400);
  }
  await c.env.SHARDS.put(key(sha256), JSON.stringify(approval));
  return c.json(approval, 201);
});

approvals.delete('/:sha256', ownerOnly, async (c) => {
  const sha256 = c.req.param('sha256');
  if (!SHA256.test(sha256)) return c.json({ error: `'${sha256}' is not a hex SHA-256` }, 400);
  if (!(await c.env.SHARDS.head(key(sha256)))) return c.json({ error: `no approval of segment ${sha256}` }, 404);
  await c.env.SHARDS.delete(key(sha256));
  return c.body(null, 204);
});
