/**
 * The public groups of similar tokens an owner loads for the groups defence (core/privacy/groups.ts): PUT /groups
 * checks and stores a table under its SHA-256, which the owner then names in an approval's or DEFENCE's setting
 * ({"mechanism": "groups", "epsilon": 0, "groups": "<sha256>"}); GET /groups/<sha256> serves it (public: the server
 * may read what the uploads were sanitised with).
 */
import { Hono } from 'hono';
import { checkGroups, groupsSha256, canonicalGroups, MIN_GROUP_SIZE, type TokenGroups } from '../../../core/privacy/groups.ts';
import { groupsKey, MAX_GROUPS_BYTES, MAX_TOKEN_ID } from './groups-store.ts';
import { parseJson } from '../../../core/json/parse.ts';
import { refuseUnknownKeys } from '../../../core/json/suggest.ts';
import { SHA256 } from '../../../core/wire/policy.ts';
import { ownerOnly, ownerOrServer } from './auth.ts';
import { boundedBody } from './body.ts';
import type { Env } from './env.ts';

export const groups = new Hono<{ Bindings: Env }>();

groups.put('/', ownerOnly, async (c) => {
  const body = await boundedBody(c.req.raw, MAX_GROUPS_BYTES);
  if (!body) return c.json({ error: `groups: more than ${MAX_GROUPS_BYTES} bytes` }, 413);
  let table: TokenGroups;
  try {
    table = parseJson(new TextDecoder().decode(body), 'groups') as TokenGroups;
    if (typeof table === 'object' && table !== null)
      refuseUnknownKeys(table as unknown as Record<string, unknown>, ['groups', 'placeholder', 'keep'], 'groups');
    checkGroups(table, { vocabSize: MAX_TOKEN_ID, minSize: MIN_GROUP_SIZE });
  } catch (e) {
    return c.json({ error: (e as Error).message }, 400);
  }
  const sha256 = groupsSha256(table);
  await c.env.SHARDS.put(groupsKey(sha256), canonicalGroups(table));
  return c.json({ sha256, groups: table.groups.length, tokens: table.groups.reduce((n, g) => n + g.length, 0) }, 201);
});

groups.get('/:sha256', ownerOrServer, async (c) => {
  const sha256 = c.req.param('sha256');
  if (!SHA256.test(sha256)) return c.json({ error: `'${sha256}' is not a hex SHA-256` }, 400);
  const stored = await c.env.SHARDS.get(groupsKey(sha256));
  if (!stored) return c.json({ error: `no groups ${sha256} on this device` }, 404);
  return c.body(await stored.text(), 200, { 'content-type': 'application/json' });
});
