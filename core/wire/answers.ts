/**
 * What a device answers the server (its shard listing, its owner's policy, its round status) is input from a party
 * the run does not trust: each answer is checked against a schema with bounds before anything uses it, and an answer
 * that fails names what was wrong. The server leaves such a device out of the round with that reason.
 */
import { z } from 'zod';
import { parseDefence, type Defence } from '../privacy/defence.ts';
import { LOWEST_CUT, parseApproval, type DevicePolicy } from './policy.ts';
import type { RoundStatus, RoundTask } from './round.ts';
import { untrustedText } from './untrusted.ts';

/** A shard as a device lists it (checked against the schema below before anything reads it). */
export interface ShardSummary {
  name: string;
  rows: number;
  /** The shard's task (devices before generation existed list none: classification). */
  task?: RoundTask;
  labels: string[];
  /** Changes whenever the shard's content does. */
  etag: string;
}

/** A device's answer that fails its schema: the device is left out, not retried. */
export class AnswerError extends Error {
  override name = 'AnswerError';
}

/** More shards, labels or approvals than any device needs: an answer beyond these is refused, not trimmed. */
export const ANSWER_LIMITS = { shards: 1000, labels: 1000, approvals: 1000, failures: 100 };

const boundedString = (max: number) => z.string().min(1).max(max);
const count = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

const ShardSchema = z.object({
  name: boundedString(128),
  rows: z.number().int().positive(),
  task: z.enum(['classification', 'generation']).optional(),
  labels: z.array(boundedString(200)).max(ANSWER_LIMITS.labels),
  etag: boundedString(200),
});

const ListingSchema = z.object({ shards: z.array(ShardSchema.passthrough()).max(ANSWER_LIMITS.shards) });

const StatusSchema = z.object({
  state: z.enum(['running', 'complete', 'failed']),
  batchesDone: count,
  batchesTotal: count,
  failures: z.array(z.unknown()).max(ANSWER_LIMITS.failures).default([]),
  tokens: count.default(0),
  forwardMs: z.number().nonnegative().finite().default(0),
  wasmMemoryBytes: count.optional(),
  error: z.unknown().optional(),
});

/** "field 'shards[0].rows': Too small: expected number to be >0" for the first problem of a failed parse. */
function problem(what: string, error: z.ZodError): Error {
  const i = error.issues[0]!;
  const field = i.path.reduce<string>((a, p) => (typeof p === 'number' ? `${a}[${p}]` : a ? `${a}.${String(p)}` : String(p)), '');
  return new AnswerError(`${what}: field '${field || '(answer)'}' ${untrustedText(i.message, 200)}`);
}

/** A device's GET /shards answer, checked; shard names are unique. */
export function parseShardListing(value: unknown): ShardSummary[] {
  const parsed = ListingSchema.safeParse(value);
  if (!parsed.success) throw problem('shard listing', parsed.error);
  const shards = parsed.data.shards.map(({ name, rows, task, labels, etag }) => ({ name, rows, labels, etag, ...(task ? { task } : {}) }));
  const names = new Set<string>();
  for (const s of shards) {
    if (names.has(s.name)) throw new AnswerError(`shard listing: shard '${untrustedText(s.name, 128)}' is listed twice`);
    names.add(s.name);
  }
  return shards;
}

/** A device's GET /approvals answer, checked as the device itself checks what its owner sets. */
export function parseDevicePolicy(value: unknown): DevicePolicy {
  const p = value as Record<string, unknown>;
  if (typeof p !== 'object' || p === null || Array.isArray(p)) throw new AnswerError('policy: not a JSON object');
  if (!Number.isSafeInteger(p.minCut) || (p.minCut as number) < LOWEST_CUT) throw new AnswerError(`policy: field 'minCut' must be an integer >= ${LOWEST_CUT}`);
  if (!Array.isArray(p.approvals) || p.approvals.length > ANSWER_LIMITS.approvals)
    throw new AnswerError(`policy: field 'approvals' must be a list of at most ${ANSWER_LIMITS.approvals}`);
  const minCut = p.minCut as number;
  // Approvals below a minimum cut the owner raised later stay on the device, unused: read, and left to the
  // planner's filter, rather than failing the whole answer.
  const approvals = p.approvals.map((a, i) => {
    try {
      return parseApproval(a, LOWEST_CUT, false);
    } catch (e) {
      throw new AnswerError(`policy: approvals[${i}]: ${untrustedText((e as Error).message, 200)}`);
    }
  });
  let defence: Defence;
  try {
    defence = parseDefence(p.defence, "policy: field 'defence'");
  } catch (e) {
    throw new AnswerError(untrustedText((e as Error).message, 200));
  }
  return { minCut, approvals, defence };
}

/** A device's round status, checked; its texts are bounded and made safe to log, and it must be the round asked for. */
export function parseRoundStatus(value: unknown, asked: { device: string; runId: string; round: number }): RoundStatus {
  const parsed = StatusSchema.safeParse(value);
  if (!parsed.success) throw problem('round status', parsed.error);
  const s = parsed.data;
  return {
    ...asked,
    state: s.state,
    batchesDone: s.batchesDone,
    batchesTotal: s.batchesTotal,
    failures: s.failures.map((f) => untrustedText(f)),
    tokens: s.tokens,
    forwardMs: s.forwardMs,
    ...(s.wasmMemoryBytes === undefined ? {} : { wasmMemoryBytes: s.wasmMemoryBytes }),
    ...(s.error === undefined ? {} : { error: untrustedText(s.error) }),
  };
}
