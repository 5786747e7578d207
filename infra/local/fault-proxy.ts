/**
 * A pass-through HTTP proxy in front of the real S3 server that fails chosen requests: how tests and drills make
 * storage fail, transiently or for good, without faking the storage itself. A fault is a 503, a connection reset
 * before any answer, or a body cut short after its headers promised all of it.
 */
import { createServer, request, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Random } from '../../core/random.ts';

export type FaultKind = '503' | 'reset' | 'truncate';

export interface FaultProxy {
  url: string;
  /** Fail the next `times` requests whose method and path match (Infinity: always). */
  fail(method: string, pathIncludes: string, times: number, kind?: FaultKind): void;
  /**
   * Fail this share of the requests signed with an Authorization header (the server's own S3 calls; a device's
   * presigned requests carry none), with a kind drawn at random; 0 turns it off.
   */
  chaos(rate: number, seed?: number): void;
  /** Add `headers` to the answers of requests whose path holds `pathIncludes` (a storage that labels what it serves otherwise). */
  relabel(pathIncludes: string, headers: Record<string, string>): void;
  /** Requests that were failed on purpose, as "KIND METHOD path". */
  failed: string[];
  /**
   * Every request seen: method, path without query, its Range header if any, and whether the whole answer went out
   * (`complete`; unset while it is under way, or where the client hung up before the end).
   */
  seen: Array<{ method: string; path: string; range?: string; complete?: boolean }>;
  close(): Promise<void>;
}

const KINDS: FaultKind[] = ['503', 'reset', 'truncate'];

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const rules: Array<{ method: string; path: string; left: number; kind: FaultKind }> = [];
  const labels: Array<{ path: string; headers: Record<string, string> }> = [];
  const failed: string[] = [];
  const seen: FaultProxy['seen'] = [];
  let chaos = { rate: 0, rng: new Random(0) };
  const upstream = new URL(target);
  const server = createServer((req: IncomingMessage, res) => {
    // A client that hangs up (or a fault that cut it off) must not take the proxy down.
    req.on('error', () => {});
    res.on('error', () => {});
    const path = req.url!.split('?')[0];
    const entry: FaultProxy['seen'][number] = { method: req.method!, path, range: req.headers.range };
    seen.push(entry);
    res.on('finish', () => (entry.complete = true));
    const rule = rules.find((r) => r.left > 0 && r.method === req.method && req.url!.includes(r.path));
    let kind: FaultKind | undefined;
    if (rule) {
      rule.left--;
      kind = rule.kind;
    } else if (chaos.rate > 0 && req.headers.authorization && chaos.rng.uniform() < chaos.rate) {
      kind = KINDS[Math.floor(chaos.rng.uniform() * KINDS.length)];
      // A body can be cut short only on an answer that has one.
      if (kind === 'truncate' && req.method !== 'GET') kind = 'reset';
    }
    if (kind === '503' || kind === 'reset') {
      failed.push(`${kind} ${req.method} ${path}`);
      req.resume();
      if (kind === '503') res.writeHead(503).end('injected fault');
      else res.socket?.destroy();
      return;
    }
    const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      up.on('error', () => res.destroy());
      const relabelled = labels.filter((l) => req.url!.includes(l.path)).map((l) => l.headers);
      res.writeHead(up.statusCode!, Object.assign({ ...up.headers }, ...relabelled));
      const length = Number(up.headers['content-length']);
      if (kind === 'truncate' && length > 1) {
        failed.push(`truncate ${req.method} ${path}`);
        let sent = 0;
        up.on('data', (chunk: Buffer) => {
          const room = Math.floor(length / 2) - sent;
          if (room > 0) res.write(chunk.subarray(0, room));
          sent += chunk.length;
          if (sent >= length / 2) res.socket?.destroy();
        });
        return;
      }
      up.pipe(res);
    });
    // The upstream may fail before answering (502) or in the middle of a body (the client sees the connection drop).
    forward.on('error', (e) => (res.headersSent ? res.destroy() : res.writeHead(502).end(e.message)));
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    fail: (method, path, times, kind = '503') => rules.push({ method, path, left: times, kind }),
    chaos: (rate, seed = 0) => (chaos = { rate, rng: new Random(seed) }),
    relabel: (path, headers) => void labels.push({ path, headers }),
    failed,
    seen,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
