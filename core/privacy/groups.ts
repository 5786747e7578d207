/**
 * Randomised response within public groups of similar tokens: the device replaces each token by a member of its
 * group, keeping it with probability e^epsilon / (e^epsilon + K - 1) (K the group's size), any other member with
 * 1 / (e^epsilon + K - 1): K-ary randomised response (Kairouz et al. 2016) on the group, as CusText (Chen et al. 2023)
 * confines SanText's replacements to a token's own similar tokens. The promise: any two tokens of one group are
 * epsilon-indistinguishable in what leaves; which group a token belongs to leaves in clear, and that is what the task
 * keeps (a positive word stays a positive word). Tokens of no group leave as the placeholder.
 *
 * The groups are public (built from public text, groups-from-text.ts) and the owner approves them; a device checks them
 * (checkGroups) so that nobody can hand it groups that give a token away: every group holds at least the owner's
 * minimum of tokens, and no token lies in two groups (CusText's per-token sets may overlap, and a token whose set is
 * its own tells itself).
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { canonicalDefence, type Defence } from './defence.ts';
import { cumulative, type Outputs, type TokenMechanism } from './sanitise.ts';

/** The groups a device sanitises with, as the owner approves them. */
export interface TokenGroups {
  groups: number[][];
  /** What a token of no group leaves as (e.g. the end-of-text token). */
  placeholder: number;
}

/** The least group size a device accepts unless its owner sets more. */
export const MIN_GROUP_SIZE = 8;

/** Throws naming what is wrong with groups a device is handed: vocabulary range, sizes, overlaps, the placeholder. */
export function checkGroups(g: TokenGroups, { vocabSize, minSize = MIN_GROUP_SIZE }: { vocabSize: number; minSize?: number }): void {
  const token = (t: unknown, where: string) => {
    if (!Number.isSafeInteger(t) || (t as number) < 0 || (t as number) >= vocabSize)
      throw new Error(`${where}: ${JSON.stringify(t)} is not a token id below ${vocabSize}`);
  };
  if (typeof g !== 'object' || g === null || !Array.isArray(g.groups)) throw new Error('groups: must be {"groups": [[token ids]], "placeholder": id}');
  token(g.placeholder, 'groups.placeholder');
  const seen = new Map<number, number>();
  g.groups.forEach((group, i) => {
    if (!Array.isArray(group)) throw new Error(`groups[${i}]: must be an array of token ids`);
    if (group.length < minSize)
      throw new Error(`groups[${i}]: ${group.length} tokens, fewer than the owner's minimum of ${minSize} (a small group gives its tokens away)`);
    for (const t of group) {
      token(t, `groups[${i}]`);
      if (t === g.placeholder) throw new Error(`groups[${i}]: holds the placeholder ${t}`);
      if (seen.has(t)) throw new Error(`groups[${i}]: token ${t} is also in groups[${seen.get(t)}] (groups must not overlap)`);
      seen.set(t, i);
    }
  });
}

/** The mechanism of checked groups at epsilon; `keep`: tokens left as they are (start and end tokens). */
export function groupMechanism(g: TokenGroups, epsilon: number, keep: ReadonlySet<number>): TokenMechanism {
  const byToken = new Map<number, Outputs>();
  for (const group of g.groups) {
    const tokens = Int32Array.from(group);
    group.forEach((x, i) => byToken.set(x, { tokens, cdf: cumulative(group.map((_, j) => (i === j ? Math.exp(epsilon) : 1))) }));
  }
  const placeholder: Outputs = { tokens: Int32Array.of(g.placeholder), cdf: Float64Array.of(1) };
  return { outputs: (x) => (keep.has(x) ? undefined : (byToken.get(x) ?? placeholder)) };
}

/** One spelling of a set of groups: each group's tokens ascending, groups by their first token. What its SHA-256 names. */
export function canonicalGroups(g: TokenGroups): string {
  const groups = g.groups.map((x) => [...x].sort((a, b) => a - b)).sort((a, b) => a[0] - b[0]);
  return JSON.stringify({ groups, placeholder: g.placeholder });
}

/** The SHA-256 (hex) of canonicalGroups: how an owner's setting names its groups. */
export function groupsSha256(g: TokenGroups): string {
  return bytesToHex(sha256(new TextEncoder().encode(canonicalGroups(g))));
}

/** What a sanitising device's draws hang on: the segment and the setting (the groups' hash in it). */
export function groupsContext(segment: string, defence: Defence): Uint8Array {
  return new TextEncoder().encode(`${segment}\n${canonicalDefence(defence)}`);
}
