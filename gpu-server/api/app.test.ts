/**
 * The operator API over HTTP on in-memory storage and in-process devices: its OpenAPI document, validation at the
 * edge, typed errors, and the client checking every answer against the declared schemas.
 */
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADAPTER_CONFIG } from '../../core/peft/adapter.ts';
import { world, type World } from '../../tests/support/round-world.ts';
import { RunRegistry } from '../runs/registry.ts';
import { initBackend } from '../backends/tfjs/runtime.ts';
import { createApp } from './app.ts';
import { ApiError, ServerClient } from './client.ts';
import { routes } from './routes.ts';
import type { RequestLine } from '../log.ts';
import { Validator } from '@seriousme/openapi-schema-validator';

let w: World;
let runs: RunRegistry;
const servers: Array<ReturnType<typeof serve>> = [];

async function listen(fetch: (r: Request) => Response | Promise<Response>): Promise<string> {
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
  });
  servers.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

let url: string;
let client: ServerClient;
const requests: RequestLine[] = [];
beforeAll(async () => {
  await initBackend('cpu');
  w = await world({ rows: 8 });
  runs = new RunRegistry({ store: w.store, roundSecret: 's', log: () => {}, pollMs: 5, dataDirs: [w.dir], device: (d) => w.devices.get(d.id)! });
  url = await listen(
    createApp(
      runs,
      'op',
      () => {},
      (line) => requests.push(line),
    ).fetch,
  );
  client = new ServerClient(url, 'op');
});
afterAll(async () => {
  for (const r of runs?.list() ?? []) await runs.idle(r.id);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  await w?.close();
});

const failure = (p: Promise<unknown>) =>
  p.then(
    () => 'no error',
    (e: ApiError) => `${e.status} ${e.message}`,
  );
const post = (path: string, body: string, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
  fetch(new URL(path, url), { method: 'POST', headers: { authorization: 'Bearer op', ...headers }, body }).then(async (r) => [
    r.status,
    (await r.json()).error,
  ]);

describe('operator API', () => {
  it('serves an OpenAPI document with exactly the routes the client calls, each behind the operator token', async () => {
    const doc = await (await fetch(new URL('/openapi.json', url))).json();
    const documented = Object.entries(doc.paths as Record<string, Record<string, { security?: unknown }>>).flatMap(([path, ops]) =>
      Object.keys(ops).map((m) => `${m} ${path}`),
    );
    expect(documented.sort()).toEqual(
      Object.values(routes)
        .map((r) => `${r.method} ${r.path}`)
        .sort(),
    );
    for (const ops of Object.values(doc.paths as Record<string, Record<string, { security?: unknown }>>))
      for (const op of Object.values(ops)) expect(op.security).toEqual([{ operatorToken: [] }]);
    expect(Object.keys(doc.components.schemas)).toEqual(
      expect.arrayContaining(['RunSpec', 'CreateRun', 'RunRecord', 'RunView', 'RoundProgress', 'RoundMetrics', 'RoundPlan', 'DeviceView', 'Error']),
    );
    expect(doc.components.securitySchemes.operatorToken).toMatchObject({ type: 'http', scheme: 'bearer' });
  });

  it('serves an OpenAPI 3.1 document that a maintained validator accepts: path parameters required, nullable only where meant', async () => {
    const doc = await (await fetch(new URL('/openapi.json', url))).json();
    const result = await new Validator().validate(doc);
    expect(result.errors ?? [], JSON.stringify(result.errors)).toEqual([]);
    expect(result.valid).toBe(true);
    for (const [path, ops] of Object.entries(
      doc.paths as Record<string, Record<string, { parameters?: Array<{ in: string; name: string; required?: boolean }> }>>,
    ))
      for (const op of Object.values(ops)) for (const p of op.parameters ?? []) if (p.in === 'path') expect(p.required, `${path} {${p.name}}`).toBe(true);
    // Null only where a field means it: a run's live progress before any round, a round's when it is not running and
    // its metrics before it ends; never the shared components (a nullable RoundProgress was, before).
    const nullable: string[] = [];
    const walk = (v: unknown, at: string): void => {
      if (!v || typeof v !== 'object') return;
      const type = (v as { type?: unknown }).type;
      if (type === 'null' || (Array.isArray(type) && type.includes('null'))) nullable.push(at);
      for (const [k, x] of Object.entries(v)) walk(x, `${at}/${k}`);
    };
    walk(doc, '');
    expect(nullable.sort()).toEqual([
      '/components/schemas/RoundView/properties/metrics/allOf/1',
      '/components/schemas/RoundView/properties/progress/allOf/1',
      '/components/schemas/RunSummary/properties/accuracy',
      '/components/schemas/RunView/allOf/1/properties/progress/anyOf/1',
    ]);
  });

  it('logs one line per request: method, path, status and duration, never the token or the query', async () => {
    requests.length = 0;
    await fetch(new URL('/runs?token=secret-in-query', url), { headers: { authorization: 'Bearer op' } });
    await fetch(new URL('/runs', url), { headers: { authorization: 'Bearer wrong-secret' } });
    expect(requests.map(({ ms, ...r }) => [r, typeof ms])).toEqual([
      [{ method: 'GET', path: '/runs', status: 200 }, 'number'],
      [{ method: 'GET', path: '/runs', status: 403 }, 'number'],
    ]);
    expect(JSON.stringify(requests)).not.toMatch(/secret|Bearer|op"/);
  });

  it('validates requests at the edge: 400 naming each wrong field, 415 for a body that is not JSON, 401/403 for the token', async () => {
    expect(await post('/runs', JSON.stringify({ ...w.spec(), lora: { rank: 0 }, training: { batchSize: -1 } }))).toEqual([
      400,
      "field 'lora.rank': must be a positive integer, got 0; field 'training.batchSize': must be a positive integer, got -1",
    ]);
    expect(await post('/runs', '{\n  "model": "m",\n  "task": }')).toEqual([400, 'the run spec: not valid JSON at line 3, column 11 (ValueExpected)']);
    expect(await post('/runs', JSON.stringify({ ...w.spec(), trainig: { dtype: 'fp16' } }))).toEqual([
      400,
      "field 'trainig': unknown key; did you mean 'training'?",
    ]);
    expect(await post('/runs', JSON.stringify(w.spec()), { 'content-type': 'text/plain' })).toEqual([
      415,
      'send the body as JSON, with content-type: application/json',
    ]);
    expect(await failure(client.round('nope', -1))).toMatch(/^400 GET \/runs\/nope\/rounds\/-1: HTTP 400: field 'round': must be|^400 .*field 'round'/);
    expect((await fetch(new URL('/runs', url))).status).toBe(401);
    expect(await failure(new ServerClient(url, 'wrong').runs())).toBe('403 GET /runs: HTTP 403: wrong operator token');
  });

  it('drives a run through the client, every answer checked against its schema, with typed errors', async () => {
    const record = await client.createRun({ ...w.spec({ training: { batchSize: 4, seqLen: 6, rounds: 1 } }), id: 'api-run' });
    expect(record.cuts).toEqual({ 'device-1': { cut: 1, planned: false }, 'device-2': { cut: 2, planned: false } });
    expect(await failure(client.createRun({ ...w.spec(), id: 'api-run' }))).toBe('409 POST /runs: HTTP 409: run api-run exists');
    expect(await failure(client.createRun({ ...w.spec(), id: 'x', model: '/etc' }))).toMatch(/^400 .*model \/etc is outside the server's data folders/);
    expect(await client.trigger('api-run')).toBe(0);
    const done = await client.waitIdle('api-run', undefined, 20);
    expect(done.progress?.phase).toBe('done');
    expect((await client.round('api-run', 0)).plan.order.sort()).toEqual(['device-1', 'device-2']);
    expect((await client.metrics('api-run'))[0].steps).toBe(4);
    expect((await client.devices('api-run')).devices.map((d) => [d.id, d.cut, d.reachable, d.rows])).toEqual([
      ['device-1', 1, true, 8],
      ['device-2', 2, true, 8],
    ]);
    expect(JSON.parse(new TextDecoder().decode(await client.adapterFile('api-run', 'latest', ADAPTER_CONFIG))).peft_type).toBe('LORA');
    expect(await failure(client.trigger('api-run'))).toMatch(/^409 .*has done its 1 planned round/);
    expect(await failure(client.cancel('api-run'))).toBe('409 POST /runs/api-run/cancel: HTTP 409: run api-run has no round running');
    expect(await failure(client.device('api-run', 'ghost'))).toMatch(/^404 .*run api-run has no device 'ghost'/);
    expect(await client.deleteRun('api-run')).toMatchObject({ deleted: expect.any(Number) });
    expect(await failure(client.run('api-run'))).toBe("404 GET /runs/api-run: HTTP 404: no run 'api-run'");
  });

  it('the client refuses an answer that does not match the API, naming the field', async () => {
    const drifted = await listen(
      new Hono().get('/runs', (c) =>
        c.json({ runs: [{ id: 'r', createdAt: 'now', devices: 'two', rounds: 1, roundsDone: 0, status: 'ready', accuracy: null }] }),
      ).fetch,
    );
    expect(await failure(new ServerClient(drifted, 'op').runs())).toBe(
      "200 GET /runs: the answer does not match the API's schema: field 'runs[0].devices': Invalid input: expected number, received string, got \"two\"",
    );
  });
});
