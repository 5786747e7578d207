/** Who may call what: the owner (bearer token) manages shards; the training server signs its requests. */
import type { Context } from 'hono';
import { createMiddleware } from 'hono/factory';
import { timingSafeEqual, verifyRequest } from '../../../core/auth/signing.ts';
import { boundedBody, MAX_SIGNED_BODY_BYTES } from './body.ts';
import type { Env } from './env.ts';

type C = Context<{ Bindings: Env }>;

export function ownerVerdict(c: C): 'none' | 'ok' | 'bad' {
  const header = c.req.header('authorization');
  if (!header) return 'none';
  const token = /^Bearer (.+)$/.exec(header)?.[1] ?? '';
  return c.env.OWNER_TOKEN && timingSafeEqual(token, c.env.OWNER_TOKEN) ? 'ok' : 'bad';
}

type ServerVerdict = { status: 'none' | 'ok' } | { status: 'bad'; code: 403 | 413; reason: string };

/** Verifies the server's signature and claims its nonce, so the same request cannot be played twice. */
async function serverVerdict(c: C): Promise<ServerVerdict> {
  if (!c.req.header('x-splitfrozen-signature')) return { status: 'none' };
  const url = new URL(c.req.url);
  const body = await boundedBody(c.req.raw, MAX_SIGNED_BODY_BYTES);
  if (!body) return { status: 'bad', code: 413, reason: `request body over ${MAX_SIGNED_BODY_BYTES} bytes, the most a signed request may carry` };
  const verdict = await verifyRequest(c.env.ROUND_SECRET ?? '', c.env.DEVICE_ID, c.req.method, url.pathname + url.search, c.req.raw.headers, body);
  if (!verdict.ok) return { status: 'bad', code: 403, reason: verdict.reason };
  const guard = c.env.NONCES.get(c.env.NONCES.idFromName('nonces'));
  if (!(await guard.claim(verdict.nonce, verdict.timestamp))) return { status: 'bad', code: 403, reason: 'replayed request' };
  return { status: 'ok' };
}

export const ownerOnly = createMiddleware<{ Bindings: Env }>(async (c, next) => {
  const v = ownerVerdict(c);
  if (v === 'none') return c.json({ error: 'missing owner token: send Authorization: Bearer <OWNER_TOKEN>' }, 401);
  if (v === 'bad') return c.json({ error: 'wrong owner token' }, 403);
  await next();
});

export const serverOnly = createMiddleware<{ Bindings: Env }>(async (c, next) => {
  const v = await serverVerdict(c);
  if (v.status === 'none') return c.json({ error: 'missing request signature' }, 401);
  if (v.status === 'bad') return c.json({ error: v.reason }, v.code);
  await next();
});

/** Listing shards: the owner, or the server planning a round (names and row counts only). */
export const ownerOrServer = createMiddleware<{ Bindings: Env }>(async (c, next) => (c.req.header('authorization') ? ownerOnly(c, next) : serverOnly(c, next)));
