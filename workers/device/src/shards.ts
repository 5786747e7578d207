/**
 * The owner's private shards, kept only in this worker's own R2 bucket; the server sees names, row counts and the
 * task. A classification shard holds labelled text (PUT ?labels=a,b); a generation shard (PUT ?task=generation)
 * holds prompts and completions ({prompt, completion} or GSM8K's {question, answer} JSON lines).
 */
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { Hono } from 'hono';
import { hex } from '../../../core/auth/signing.ts';
import { parseGenerationShard, type GenerationExample } from '../../../core/data/generation.ts';
import { decodeLines, deserializeRows, parseShard, serializeRows, ShardError, type Example } from '../../../core/data/shard.ts';
import type { RoundTask } from '../../../core/wire/round.ts';
import { checkId } from '../../../core/storage/keys.ts';
import type { Env } from './env.ts';
import { deviceSettings } from './settings.ts';
import { ownerOnly, ownerOrServer } from './auth.ts';

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

const key = (name: string) => `shards/${name}.jsonl`;
const utf8 = (s: string) => new TextEncoder().encode(s);

/**
 * The listed etag: an HMAC of the shard's name and storage etag, which is the MD5 of its text and would confirm
 * anyone's guess of it. Keyed by OWNER_TOKEN, through HKDF with a label of its own so that key serves nothing else:
 * every device has the token, the server never does, and its holder knows the text anyway (DEFENCE_SECRET is unset
 * where no defence is; ROUND_SECRET is the server's). A new OWNER_TOKEN only makes the server compute the activations
 * again.
 */
function etagKey(env: Env): Uint8Array {
  return hkdf(sha256, utf8(env.OWNER_TOKEN), utf8('splitfrozen'), utf8('shard etag v1'), 32);
}

export async function listShards(env: Env): Promise<ShardInfo[]> {
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

export type ShardRows = { task: 'classification'; rows: Example[]; labels: string[] } | { task: 'generation'; rows: GenerationExample[]; labels: [] };

export async function loadShard(env: Env, name: string): Promise<ShardRows | undefined> {
  const obj = await env.SHARDS.get(key(name));
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
    };
  return { task: 'classification', rows: deserializeRows(text), labels: JSON.parse(obj.customMetadata?.labels ?? '[]') };
}

export const shards = new Hono<{ Bindings: Env }>();

shards.get('/', ownerOrServer, async (c) => c.json({ shards: await listShards(c.env) }));

shards.put('/:name', ownerOnly, async (c) => {
  const name = c.req.param('name');
  try {
    checkId('shard', name);
  } catch (e) {
    return c.json({ error: (e as Error).message }, 400);
  }
  const task = c.req.query('task') ?? 'classification';
  if (task !== 'classification' && task !== 'generation') return c.json({ error: `task '${task}' is not classification or generation` }, 400);
  const format = c.req.query('format') ?? (c.req.header('content-type')?.includes('tab-separated') ? 'tsv' : 'jsonl');
  if (format !== 'jsonl' && format !== 'tsv') return c.json({ error: `format '${format}' is not jsonl or tsv` }, 400);
  if (task === 'generation' && format !== 'jsonl')
    return c.json({ error: 'a generation shard is JSON lines ({prompt, completion} or {question, answer})' }, 400);
  const labels = task === 'generation' ? [] : (c.req.query('labels')?.split(',') ?? deviceSettings(c.env).labels);
  const limits = deviceSettings(c.env).shardLimits;
  const declared = Number(c.req.header('content-length'));
  if (declared > limits.maxBytes) return c.json({ error: `shard is ${declared} bytes; the limit is ${limits.maxBytes}` }, 413);
  const body = new Uint8Array(await c.req.arrayBuffer());
  let stored: string;
  let count: number;
  try {
    if (task === 'generation') {
      if (body.byteLength > limits.maxBytes) throw new ShardError(413, `shard is ${body.byteLength} bytes; the limit is ${limits.maxBytes}`);
      const rows = parseGenerationShard(decodeLines(body), limits);
      [stored, count] = [rows.map((r) => JSON.stringify(r)).join('\n') + '\n', rows.length];
    } else {
      const rows = parseShard(body, format, labels, limits);
      [stored, count] = [serializeRows(rows), rows.length];
    }
  } catch (e) {
    if (e instanceof ShardError) return c.json({ error: e.message }, e.status);
    throw e;
  }
  // One PUT of the whole validated shard: R2 stores it entirely or not at all.
  await c.env.SHARDS.put(key(name), stored, { customMetadata: { rows: String(count), task, labels: JSON.stringify(labels), format } });
  return c.json({ name, rows: count, task, labels }, 201);
});

shards.delete('/:name', ownerOnly, async (c) => {
  const name = c.req.param('name');
  try {
    checkId('shard', name);
  } catch (e) {
    return c.json({ error: (e as Error).message }, 400);
  }
  if (!(await c.env.SHARDS.head(key(name)))) return c.json({ error: `no shard named '${name}'` }, 404);
  await c.env.SHARDS.delete(key(name));
  return c.body(null, 204);
});
