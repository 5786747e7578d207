import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { logRequest, serverLogger } from './log.ts';

describe('server log', () => {
  it('writes one JSON line per event, with its time and level; a request as method, path, status and duration', () => {
    const lines: string[] = [];
    const destination = new Writable({ write: (chunk: Buffer, _, done) => (lines.push(...String(chunk).trim().split('\n')), done()) });
    const logger = serverLogger({ destination });
    logger.info('listening on http://127.0.0.1:8080');
    logRequest(logger, { method: 'GET', path: '/runs', status: 200, ms: 3 });
    logRequest(logger, { method: 'POST', path: '/runs', status: 400, ms: 1 });
    logRequest(logger, { method: 'GET', path: '/runs/x', status: 503, ms: 9 });
    const events = lines.map((l) => JSON.parse(l) as { level: number; time: string; msg: string; req?: unknown });
    expect(events.map((e) => [e.level, e.msg])).toEqual([
      [30, 'listening on http://127.0.0.1:8080'],
      [30, 'GET /runs 200 3 ms'],
      [40, 'POST /runs 400 1 ms'],
      [50, 'GET /runs/x 503 9 ms'],
    ]);
    for (const e of events) expect(Date.parse(e.time)).toBeGreaterThan(Date.parse('2026-01-01'));
    expect(events[1]!.req).toEqual({ method: 'GET', path: '/runs', status: 200, ms: 3 });
  });
});
