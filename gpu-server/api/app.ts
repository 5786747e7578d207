/**
 * The operator's HTTP API (Hono): create runs, trigger rounds, follow them, and download adapters. Every route needs
 * the operator's bearer token; errors are JSON {error} with a status that says whose fault it is.
 */
import { Hono } from 'hono';
import { timingSafeEqual } from '../../core/auth/signing.ts';
import { StorageError } from '../../core/storage/store.ts';
import { Conflict, NotFound, type RunManager } from '../runs/manager.ts';
import { parseRunSpec, SpecError } from '../runs/spec.ts';

export function createApp(manager: RunManager, operatorToken: string, log: (m: string) => void = console.error): Hono {
  // An empty token would let in any request that sends "Authorization: Bearer " with nothing after it.
  if (!operatorToken) throw new Error('the operator token is empty');
  const app = new Hono();
  app.get('/health', (c) => c.json({ ok: true, role: 'splitfrozen-server' }));
  app.use('/runs/*', async (c, next) => {
    const header = c.req.header('authorization');
    if (!header) return c.json({ error: 'missing operator token: send Authorization: Bearer <token>' }, 401);
    const token = /^Bearer (.+)$/.exec(header)?.[1] ?? '';
    if (!timingSafeEqual(token, operatorToken)) return c.json({ error: 'wrong operator token' }, 403);
    await next();
  });

  app.onError((e, c) => {
    if (e instanceof NotFound) return c.json({ error: e.message }, 404);
    if (e instanceof Conflict) return c.json({ error: e.message }, 409);
    if (e instanceof SpecError) return c.json({ error: e.message }, 400);
    // The reason stays in the server's log: it may name keys, paths or settings the caller has no business seeing.
    log(`${c.req.method} ${c.req.path}: ${e.stack ?? e.message}`);
    if (e instanceof StorageError) return c.json({ error: 'storage unavailable; try again' }, 503);
    return c.json({ error: 'internal error (see the server log)' }, 500);
  });

  app.post('/runs', async (c) => {
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      return c.json({ error: 'the body must be a JSON run spec' }, 400);
    }
    const spec = parseRunSpec(body);
    const id = typeof (body as { id?: unknown }).id === 'string' ? (body as { id: string }).id : undefined;
    try {
      return c.json(await manager.create(spec, id), 201);
    } catch (e) {
      if (e instanceof Conflict || e instanceof StorageError) throw e;
      // The model folder, a cut, a device that cannot take part: the operator's spec is at fault.
      return c.json({ error: (e as Error).message }, 400);
    }
  });

  app.get('/runs', (c) => c.json({ runs: manager.list().map((r) => ({ id: r.id, createdAt: r.createdAt, devices: r.spec.devices.length, rounds: r.spec.training.rounds })) }));

  app.get('/runs/:id', async (c) => {
    const s = manager.state(c.req.param('id'));
    return c.json({ ...s.record, running: s.running !== undefined, progress: s.progress ?? null, metrics: await manager.metrics(s.record.id) });
  });

  app.post('/runs/:id/rounds', async (c) => c.json({ round: await manager.trigger(c.req.param('id')) }, 202));

  app.get('/runs/:id/rounds/:round', async (c) => {
    const id = c.req.param('id');
    const round = roundParam(c.req.param('round'));
    const progress = manager.progress(id);
    const plan = await manager.plan(id, round);
    const metrics = (await manager.metrics(id)).find((m) => m.round === round) ?? null;
    return c.json({ plan, progress: progress?.round === round ? progress : null, metrics });
  });

  app.get('/runs/:id/metrics', async (c) => c.json({ metrics: await manager.metrics(c.req.param('id')) }));

  app.get('/runs/:id/devices', async (c) => {
    const s = manager.state(c.req.param('id'));
    return c.json({ devices: await Promise.all(s.record.spec.devices.map((d) => deviceInfo(manager, s.record.id, d.id))) });
  });

  app.get('/runs/:id/devices/:device', async (c) => c.json(await deviceInfo(manager, c.req.param('id'), c.req.param('device'))));

  app.get('/runs/:id/adapters/:round/:file', async (c) => {
    const r = c.req.param('round');
    const bytes = await manager.adapterFile(c.req.param('id'), r === 'latest' ? 'latest' : roundParam(r), c.req.param('file'));
    const type = c.req.param('file').endsWith('.json') ? 'application/json' : 'application/octet-stream';
    return c.body(bytes as Uint8Array<ArrayBuffer>, 200, { 'content-type': type });
  });

  return app;
}

function roundParam(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new NotFound(`'${value}' is not a round number`);
  return n;
}

async function deviceInfo(manager: RunManager, runId: string, deviceId: string) {
  const s = manager.state(runId);
  const d = s.record.spec.devices.find((x) => x.id === deviceId);
  if (!d) throw new NotFound(`run ${runId} has no device '${deviceId}'; its devices are ${s.record.spec.devices.map((x) => x.id).join(', ')}`);
  const shards = await manager
    .client(s, deviceId)
    .shards()
    .then((list) => ({ reachable: true, rows: list.reduce((a, x) => a + x.rows, 0), shards: list.map(({ name, rows }) => ({ name, rows })) }))
    .catch((e: Error) => ({ reachable: false, error: e.message }));
  return { id: d.id, url: d.url, profile: d.profile, ...s.record.cuts[d.id], ...shards };
}
