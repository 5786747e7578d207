/** The owner's groups tables as stored in the device's bucket (groups.ts serves them). */
import { checkGroups, MIN_GROUP_SIZE, type TokenGroups } from '../../../core/privacy/groups.ts';
import type { Bindings } from './bindings.ts';

/** The largest groups table a device takes: a 200,000-token vocabulary in groups is about 1.5 MB of JSON. */
export const MAX_GROUPS_BYTES = 8 * 2 ** 20;
/** Token ids a table may name: every vocabulary of the project is far below. */
export const MAX_TOKEN_ID = 2 ** 24;

export const groupsKey = (sha256: string) => `groups/${sha256}.json`;

/** The stored groups of a setting, checked again as they are read: what sanitises must pass today's checks. */
export async function loadGroups(env: Bindings, sha256: string): Promise<TokenGroups | undefined> {
  const stored = await env.SHARDS.get(groupsKey(sha256));
  if (!stored) return undefined;
  const groups = (await stored.json()) as TokenGroups;
  checkGroups(groups, { vocabSize: MAX_TOKEN_ID, minSize: MIN_GROUP_SIZE });
  return groups;
}
