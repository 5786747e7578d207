/**
 * Starts the device worker under real workerd through wrangler's programmatic API, offline and on 127.0.0.1, with
 * wrangler's state, config and temp files kept in the project's .local folder.
 */
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';

export interface RunningDevice {
  url: URL;
  stop(): Promise<void>;
}

const LOCAL = resolve('.local/wrangler');

/** Wrangler must not phone home, and must not write outside the project. Set before wrangler loads. */
export function offlineWranglerEnv(): void {
  Object.assign(process.env, {
    WRANGLER_SEND_METRICS: 'false',
    WRANGLER_SEND_ERROR_REPORTS: 'false',
    CLOUDFLARE_CF_FETCH_ENABLED: 'false',
    XDG_CONFIG_HOME: resolve(LOCAL, 'config'),
    TMPDIR: resolve(LOCAL, 'tmp'),
  });
}

export async function startDevice({ env }: { env?: string } = {}): Promise<RunningDevice> {
  offlineWranglerEnv();
  await mkdir(process.env.TMPDIR!, { recursive: true });
  const { unstable_startWorker } = await import('wrangler');
  const worker = await unstable_startWorker({
    config: resolve('wrangler.toml'),
    env,
    dev: { server: { hostname: '127.0.0.1', port: 0 }, inspector: false, persist: resolve(LOCAL, 'state', env ?? 'default') },
  });
  await worker.ready;
  return { url: await worker.url, stop: () => worker.dispose() };
}
