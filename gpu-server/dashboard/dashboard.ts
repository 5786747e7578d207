/**
 * The operator's live dashboard: a static page (HTML, three ES modules, CSS) that holds no run data itself. It asks for
 * the operator token once and polls the token-protected JSON API, so serving it needs no authentication of its own.
 */
import { readFileSync } from 'node:fs';
import { Hono } from 'hono';

const asset = (name: string) => readFileSync(new URL(name, import.meta.url), 'utf8');

const FILES: Record<string, { body: string; type: string }> = {
  '/': { body: asset('index.html'), type: 'text/html; charset=utf-8' },
  '/dashboard.js': { body: asset('dashboard.js'), type: 'text/javascript; charset=utf-8' },
  '/render.js': { body: asset('render.js'), type: 'text/javascript; charset=utf-8' },
  '/rounds.js': { body: asset('rounds.js'), type: 'text/javascript; charset=utf-8' },
  '/dashboard.css': { body: asset('dashboard.css'), type: 'text/css; charset=utf-8' },
};

// Device ids and errors shown on the page come from configuration and remote devices: even if one slipped past the
// page's escaping, no inline or foreign script would run, and no other site may frame the page.
const HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

export function dashboard(): Hono {
  const app = new Hono();
  for (const [path, file] of Object.entries(FILES)) app.get(path, (c) => c.body(file.body, 200, { ...HEADERS, 'content-type': file.type }));
  return app;
}
