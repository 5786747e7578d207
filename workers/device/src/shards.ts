/**
 * The owner's private shards, kept only in this worker's own R2 bucket; the server sees names, row counts, the task,
 * the label set and an etag. A classification shard holds labelled text (PUT ?labels=a,b); a generation shard (PUT ?task=generation)
 * holds prompts and completions ({prompt, completion} or GSM8K's {question, answer} JSON lines).
 */
import { Hono } from 'hono';
import { parseGenerationShard } from '../../../core/data/generation.ts';
import { decodeLines, parseShard, serializeRows, ShardError } from '../../../core/data/shard.ts';
import { checkId } from '../../../core/storage/keys.ts';
import type { Env } from './env.ts';
import { deviceSettings } from './settings.ts';
import { ownerOnly, ownerOrServer, ownerVerdict } from './auth.ts';
import { listShards, shardKey } from './shard-store.ts';

export const shards = new Hono<{ Bindings: Env }>();

shards.get('/', ownerOrServer, async (c) => {
  const listed = await listShards(c.env);
  // A shard's size and upload time are the owner's alone (a one-row shard's size is its text's length): the server
  // sees what it plans with.
  if (ownerVerdict(c) === 'ok') return c.json({ shards: listed });
  return c.json({ shards: listed.map(({ bytes: _bytes, uploaded: _uploaded, ...summary }) => summary) });
});

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
  await c.env.SHARDS.put(shardKey(name), stored, { customMetadata: { rows: String(count), task, labels: JSON.stringify(labels), format } });
  return c.json({ name, rows: count, task, labels }, 201);
});

shards.delete('/:name', ownerOnly, async (c) => {
  const name = c.req.param('name');
  try {
    checkId('shard', name);
  } catch (e) {
    return c.json({ error: (e as Error).message }, 400);
  }
  if (!(await c.env.SHARDS.head(shardKey(name)))) return c.json({ error: `no shard named '${name}'` }, 404);
  await c.env.SHARDS.delete(shardKey(name));
  return c.body(null, 204);
});
