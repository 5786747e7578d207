/**
 * A pass-through HTTP proxy in front of the real S3 server that fails chosen requests with 503: how tests make a
 * device's upload fail, transiently or for good, without faking the storage itself.
 */
import { createServer, request, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FaultProxy {
  url: string;
  /** Fail the next `times` requests whose method and path match (Infinity: always). */
  fail(method: string, pathIncludes: string, times: number): void;
  /** Requests that were failed on purpose, as "METHOD path". */
  failed: string[];
  /** Every request seen: method, path without query, and its Range header if any. */
  seen: Array<{ method: string; path: string; range?: string }>;
  close(): Promise<void>;
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const rules: Array<{ method: string; path: string; left: number }> = [];
  const failed: string[] = [];
  const seen: FaultProxy['seen'] = [];
  const upstream = new URL(target);
  const server = createServer((req: IncomingMessage, res) => {
    seen.push({ method: req.method!, path: req.url!.split('?')[0], range: req.headers.range });
    const rule = rules.find((r) => r.left > 0 && r.method === req.method && req.url!.includes(r.path));
    if (rule) {
      rule.left--;
      failed.push(`${req.method} ${req.url!.split('?')[0]}`);
      req.resume();
      res.writeHead(503).end('injected fault');
      return;
    }
    const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode!, up.headers);
      up.pipe(res);
    });
    forward.on('error', (e) => res.writeHead(502).end(e.message));
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    fail: (method, path, times) => rules.push({ method, path, left: times }),
    failed,
    seen,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
