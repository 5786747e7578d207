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
  /** What a token of no group leaves as (e.g. the end-of-text token); it passes unchanged itself. */
  placeholder: number;
  /**
   * Tokens the owner lets through unchanged: the tokenizer's start and end tokens, the same in every row. The owner's
   * table says which, never a round request (whose tokenizer fields the server writes).
   */
  keep?: number[];
}

/** The least group size a device accepts unless its owner sets more. */
export const MIN_GROUP_SIZE = 8;
/** The largest group and the most kept tokens a device accepts: bounds on what a table costs it to hold. */
export const MAX_GROUP_SIZE = 4096;
export const MAX_KEEP = 16;

/** Throws naming what is wrong with groups a device is handed: vocabulary range, sizes, overlaps, the placeholder. */
export function checkGroups(g: TokenGroups, { vocabSize, minSize = MIN_GROUP_SIZE }: { vocabSize: number; minSize?: number }): void {
  const token = (t: unknown, where: string) => {
    if (!Number.isSafeInteger(t) || (t as number) < 0 || (t as number) >= vocabSize)
      throw new Error(`${where}: ${JSON.stringify(t)} is not a token id below ${vocabSize}`);
  };
  if (typeof g !== 'object' || g === null || !Array.isArray(g.groups)) throw new Error('groups: must be {"groups": [[token ids]], "placeholder": id}');
  token(g.placeholder, 'groups.placeholder');
  if (g.keep !== undefined && (!Array.isArray(g.keep) || g.keep.length > MAX_KEEP))
    throw new Error(`groups.keep: must be an array of at most ${MAX_KEEP} token ids (start and end tokens)`);
  g.keep?.forEach((t) => token(t, 'groups.keep'));
  const kept = new Set(g.keep ?? []);
  const seen = new Map<number, number>();
  g.groups.forEach((group, i) => {
    if (!Array.isArray(group)) throw new Error(`groups[${i}]: must be an array of token ids`);
    if (group.length < minSize)
      throw new Error(`groups[${i}]: ${group.length} tokens, fewer than the owner's minimum of ${minSize} (a small group gives its tokens away)`);
    if (group.length > MAX_GROUP_SIZE) throw new Error(`groups[${i}]: ${group.length} tokens, more than ${MAX_GROUP_SIZE}`);
    for (const t of group) {
      token(t, `groups[${i}]`);
      if (t === g.placeholder) throw new Error(`groups[${i}]: holds the placeholder ${t}`);
      if (kept.has(t)) throw new Error(`groups[${i}]: holds ${t}, which groups.keep lets through unchanged`);
      if (seen.has(t)) throw new Error(`groups[${i}]: token ${t} is also in groups[${seen.get(t)}] (groups must not overlap)`);
      seen.set(t, i);
    }
  });
}

/**
 * The mechanism of checked groups at epsilon: the table's keep tokens and its placeholder pass unchanged, a token of
 * no group becomes the placeholder. Each token's distribution is made when first met (memory: the tokens a shard
 * holds times their groups' sizes, not every group's size squared).
 */
export function groupMechanism(g: TokenGroups, epsilon: number): TokenMechanism {
  const keep = new Set([...(g.keep ?? []), g.placeholder]);
  const groupOf = new Map<number, Int32Array>();
  for (const group of g.groups) {
    const tokens = Int32Array.from(group);
    for (const x of group) groupOf.set(x, tokens);
  }
  const placeholder: Outputs = { tokens: Int32Array.of(g.placeholder), cdf: Float64Array.of(1) };
  const made = new Map<number, Outputs>();
  return {
    outputs(x) {
      if (keep.has(x)) return undefined;
      const tokens = groupOf.get(x);
      if (!tokens) return placeholder;
      let out = made.get(x);
      if (!out) made.set(x, (out = { tokens, cdf: cumulative(Array.from(tokens, (t) => (t === x ? Math.exp(epsilon) : 1))) }));
      return out;
    },
    // Draws hang on the groups alone: a token enters only through its own outputs' probabilities. Hung on the token,
    // rows that begin alike would give each token a fixed replacement of its own, at any epsilon, which counting
    // equal outputs across rows decodes.
    seedOf: (x: number) => groupOf.get(x)?.[0] ?? g.placeholder,
  };
}

/** One spelling of a set of groups: each group's tokens ascending, groups by their first token. What its SHA-256 names. */
export function canonicalGroups(g: TokenGroups): string {
  const groups = g.groups.map((x) => [...x].sort((a, b) => a - b)).sort((a, b) => a[0] - b[0]);
  return JSON.stringify({ groups, placeholder: g.placeholder, keep: [...(g.keep ?? [])].sort((a, b) => a - b) });
}

/** The SHA-256 (hex) of canonicalGroups: how an owner's setting names its groups. */
export function groupsSha256(g: TokenGroups): string {
  return bytesToHex(sha256(new TextEncoder().encode(canonicalGroups(g))));
}

/**
 * What a sanitising device's draws hang on: the setting alone (the groups' hash and epsilon in it), not the segment,
 * so a server that runs the same text through another approved segment gets the same replacements again.
 */
export function groupsContext(defence: Defence): Uint8Array {
  return new TextEncoder().encode(`groups\n${canonicalDefence(defence)}`);
}
