/** The owner's shards as stored in the device's own bucket: listed, read and keyed (shards.ts serves them). */
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { hex } from '../../../core/auth/signing.ts';
import { type GenerationExample } from '../../../core/data/generation.ts';
import { deserializeRows, type Example } from '../../../core/data/shard.ts';
import type { RoundTask } from '../../../core/wire/round.ts';
import type { Bindings } from './bindings.ts';

export interface ShardInfo {
  name: string;
  rows: number;
  task: RoundTask;
  labels: string[];
  bytes: number;
  uploaded: string;
  /** Changes whenever the shard's content does: the server's activation cache keys on it. */
  etag: string;
}

export const shardKey = (name: string) => `shards/${name}.jsonl`;
const utf8 = (s: string) => new TextEncoder().encode(s);

/**
 * The listed etag: an HMAC of the shard's name and storage etag, which is the MD5 of its text and would confirm
 * anyone's guess of it. Keyed by OWNER_TOKEN, through HKDF with a label of its own so that key serves nothing else:
 * every device has the token, the server never does, and its holder knows the text anyway (DEFENCE_SECRET is unset
 * where no defence is; ROUND_SECRET is the server's). A new OWNER_TOKEN only makes the server compute the activations
 * again.
 */
function etagKey(env: Bindings): Uint8Array {
  return hkdf(sha256, utf8(env.OWNER_TOKEN), utf8('splitfrozen'), utf8('shard etag v1'), 32);
}

export async function listShards(env: Bindings): Promise<ShardInfo[]> {
  const out: ShardInfo[] = [];
  const etagSecret = etagKey(env);
  let cursor: string | undefined;
  do {
    const page = await env.SHARDS.list({ prefix: 'shards/', cursor, include: ['customMetadata'] });
    for (const o of page.objects) {
      const meta = o.customMetadata ?? {};
      const name = o.key.slice('shards/'.length, -'.jsonl'.length);
      const etag = hex(hmac(sha256, etagSecret, utf8(`${name}\n${o.etag}`)));
      out.push({
        name,
        rows: Number(meta.rows),
        task: taskOf(meta),
        labels: JSON.parse(meta.labels ?? '[]'),
        bytes: o.size,
        uploaded: o.uploaded.toISOString(),
        etag,
      });
    }
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  return out;
}

const taskOf = (meta: Record<string, string>): RoundTask => (meta.task === 'generation' ? 'generation' : 'classification');

/** A shard's rows, and its storage etag (`version`): a new PUT of the shard gives a new one. */
export type ShardRows = ({ task: 'classification'; rows: Example[]; labels: string[] } | { task: 'generation'; rows: GenerationExample[]; labels: [] }) & {
  version: string;
};

export async function loadShard(env: Bindings, name: string): Promise<ShardRows | undefined> {
  const obj = await env.SHARDS.get(shardKey(name));
  if (!obj) return undefined;
  const text = await obj.text();
  if (taskOf(obj.customMetadata ?? {}) === 'generation')
    return {
      task: 'generation',
      rows: text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as GenerationExample),
      labels: [],
      version: obj.etag,
    };
  return { task: 'classification', rows: deserializeRows(text), labels: JSON.parse(obj.customMetadata?.labels ?? '[]'), version: obj.etag };
}

/**
 * Why a round may no longer upload from the shards it read (name and version each), or undefined: one its owner has
 * deleted or replaced since. The round's rows are held in memory between pieces, so only this stops them going up.
 */
export async function shardsGone(env: Bindings, read: ReadonlyArray<readonly [string, string]>): Promise<string | undefined> {
  for (const [name, version] of read) {
    const now = (await env.SHARDS.head(shardKey(name)))?.etag;
    if (now !== version) return shardChanged(name, now === undefined ? 'deleted' : 'replaced');
  }
  return undefined;
}

export const shardChanged = (name: string, how: 'deleted' | 'replaced') =>
  `shard '${name}' was ${how} by its owner during the round: no more of it is uploaded`;
