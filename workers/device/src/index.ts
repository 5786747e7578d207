/**
 * The edge device: a Hono app on Cloudflare Workers. It keeps its owner's private shards, runs the frozen ONNX
 * prefix on them when the training server asks, and uploads only activations, through presigned URLs.
 */
import { Hono } from 'hono';
import type { Env } from './env.ts';
import { approvals } from './policy.ts';
import { groups } from './groups.ts';
import { deviceSettings, SettingsError } from './settings.ts';
import { ownerVerdict } from './auth.ts';
import { rounds } from './rounds.ts';
import { shards } from './shards.ts';

const app = new Hono<{ Bindings: Env }>();

// A misconfigured device answers nothing else. Which setting is wrong, and the fix, go to its log and to its owner;
// anyone else learns only that it is misconfigured.
app.use(async (c, next) => {
  try {
    deviceSettings(c.env);
  } catch (e) {
    if (!(e instanceof SettingsError)) throw e;
    console.error(`misconfigured: ${e.message}`);
    return c.json(
      {
        error:
          ownerVerdict(c) === 'ok'
            ? `this device is misconfigured: ${e.message}`
            : "this device is misconfigured; its owner sees why (the owner's requests, or wrangler tail)",
      },
      500,
    );
  }
  await next();
});
app.get('/health', (c) => c.json({ ok: true, device: c.env.DEVICE_ID, role: 'splitfrozen-device' }));
app.route('/shards', shards);
app.route('/rounds', rounds);
app.route('/approvals', approvals);
app.route('/groups', groups);
// Internal messages can name keys or settings: the caller learns only that it failed; the device's log keeps why.
app.onError((e, c) => {
  console.error(e);
  return c.json({ error: 'internal error on this device' }, 500);
});

export default app;
export { NonceGuard } from './nonces.ts';
export { RoundRunner } from './runner.ts';
