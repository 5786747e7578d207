/**
 * The operator's HTTP API (Hono): create, follow, cancel and delete runs, trigger rounds, download adapters. Routes
 * and their schemas are routes.ts; every request is validated there and the OpenAPI document is served at
 * /openapi.json. Every /runs route needs the operator's bearer token; errors are JSON {error} with a status that says
 * whose fault it is.
 */
import { OpenAPIHono } from '@hono/zod-openapi';
import { HTTPException } from 'hono/http-exception';
import { timingSafeEqual } from '../../core/auth/signing.ts';
import { dashboard } from '../dashboard/dashboard.ts';
import { Conflict, NotFound, SpecError, StorageError } from '../runs/errors.ts';
import type { RunRegistry } from '../runs/registry.ts';
import { describeIssues } from '../runs/issues.ts';
import { CreateRunSchema } from '../runs/spec.ts';
import { parseJson } from '../../core/json/parse.ts';
import type { RequestLine } from '../log.ts';
import { routes } from './routes.ts';

export function createApp(
  runs: RunRegistry,
  operatorToken: string,
  log: (m: string) => void = console.error,
  request?: (line: RequestLine) => void,
): OpenAPIHono {
  // An empty token would let in any request that sends "Authorization: Bearer " with nothing after it.
  if (!operatorToken) throw new Error('the operator token is empty');
  const app = new OpenAPIHono({
    // A request the schemas refuse: 400 naming each wrong field.
    defaultHook: async (result, c) => {
      if (result.success) return;
      // The body is parsed already (Hono caches it): its wrong values are quoted back.
      const body = result.target === 'json' ? await c.req.json().catch(() => undefined) : undefined;
      // POST /runs is the one body: its unknown keys are named with the key most likely meant.
      return c.json({ error: describeIssues(result.error, body, result.target === 'json' ? CreateRunSchema : undefined) }, 400);
    },
  });
  if (request)
    app.use('*', async (c, next) => {
      const started = performance.now();
      await next();
      request({ method: c.req.method, path: c.req.path, status: c.res.status, ms: Math.round(performance.now() - started) });
    });
  app.route('/', dashboard());
  app.get('/health', (c) => c.json({ ok: true, role: 'splitfrozen-server' }));
  app.openAPIRegistry.registerComponent('securitySchemes', 'operatorToken', {
    type: 'http',
    scheme: 'bearer',
    description: 'The operator token (SPLITFROZEN_OPERATOR_TOKEN).',
  });
  app.doc31('/openapi.json', { openapi: '3.1.0', info: { title: 'splitfrozen training server', version: '1' } });

  const auth = async (c: Parameters<Parameters<typeof app.use>[1]>[0], next: () => Promise<void>) => {
    const header = c.req.header('authorization');
    if (!header) return c.json({ error: 'missing operator token: send Authorization: Bearer <token>' }, 401);
    const token = /^Bearer (.+)$/.exec(header)?.[1] ?? '';
    if (!timingSafeEqual(token, operatorToken)) return c.json({ error: 'wrong operator token' }, 403);
    await next();
  };
  app.use('/runs', auth);
  app.use('/runs/*', auth);
  // A body that is not JSON: 400 naming the line and column where it stops being JSON (Hono's own says only "malformed").
  app.post('/runs', async (c, next) => {
    if (!/^application\/json\b/.test(c.req.header('content-type') ?? '')) return next();
    try {
      parseJson(await c.req.text(), 'the run spec');
    } catch (e) {
      return c.json({ error: (e as Error).message }, 400);
    }
    await next();
  });

  app.onError((e, c) => {
    if (e instanceof NotFound) return c.json({ error: e.message }, 404);
    if (e instanceof Conflict) return c.json({ error: e.message }, 409);
    if (e instanceof SpecError) return c.json({ error: e.message }, 400);
    if (e instanceof HTTPException && e.status === 415) return c.json({ error: 'send the body as JSON, with content-type: application/json' }, 415);
    if (e instanceof HTTPException && e.status < 500) return c.json({ error: e.message || 'bad request' }, e.status);
    // The reason stays in the server's log: it may name keys, paths or settings the caller has no business seeing.
    log(`${c.req.method} ${c.req.path}: ${e.stack ?? e.message}`);
    if (e instanceof StorageError) return c.json({ error: 'storage unavailable; try again' }, 503);
    return c.json({ error: 'internal error (see the server log)' }, 500);
  });

  app.openapi(routes.createRun, async (c) => {
    const { id, ...spec } = c.req.valid('json');
    return c.json(await runs.create(spec, id), 201);
  });
  app.openapi(routes.listRuns, async (c) => c.json({ runs: await runs.summaries() }, 200));
  app.openapi(routes.getRun, async (c) => c.json(await runs.view(c.req.valid('param').id), 200));
  app.openapi(routes.deleteRun, async (c) => c.json(await runs.delete(c.req.valid('param').id), 200));
  app.openapi(routes.triggerRound, async (c) => c.json({ round: await runs.trigger(c.req.valid('param').id) }, 202));
  app.openapi(routes.cancelRound, async (c) => c.json({ progress: await runs.cancel(c.req.valid('param').id) }, 200));
  app.openapi(routes.getRound, async (c) => {
    const { id, round } = c.req.valid('param');
    return c.json(await runs.round(id, round), 200);
  });
  app.openapi(routes.getMetrics, async (c) => c.json({ metrics: await runs.metrics(c.req.valid('param').id) }, 200));
  app.openapi(routes.listDevices, async (c) => c.json({ devices: await runs.devices(c.req.valid('param').id) }, 200));
  app.openapi(routes.getDevice, async (c) => {
    const { id, device } = c.req.valid('param');
    return c.json(await runs.device(id, device), 200);
  });
  app.openapi(routes.getAdapterFile, async (c) => {
    const { id, round, file } = c.req.valid('param');
    const bytes = await runs.adapterFile(id, round, file);
    return c.body(bytes as Uint8Array<ArrayBuffer>, 200, { 'content-type': file.endsWith('.json') ? 'application/json' : 'application/octet-stream' });
  });
  return app;
}
