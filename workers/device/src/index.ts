/**
 * The edge device: a Hono app on Cloudflare Workers. It keeps its owner's private shards, runs the frozen ONNX
 * prefix on them when the training server asks, and uploads only activations, through presigned URLs.
 */
import { Hono } from 'hono';
import type { Env } from './env.ts';
import { rounds } from './rounds.ts';
import { shards } from './shards.ts';

const app = new Hono<{ Bindings: Env }>();

app.get('/health', (c) => c.json({ ok: true, device: c.env.DEVICE_ID, role: 'splitfrozen-device' }));
app.route('/shards', shards);
app.route('/rounds', rounds);
app.onError((e, c) => c.json({ error: e.message }, 500));

export default app;
export { NonceGuard } from './nonces.ts';
export { RoundRunner } from './runner.ts';
