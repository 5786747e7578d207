/**
 * Starts a device worker under real workerd through wrangler's programmatic API, offline and on 127.0.0.1, with its
 * own id, secrets and private R2/Durable Object state under the project's .local folder.
 */
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { LOCAL_DIR } from './paths.ts';

export interface DeviceOptions {
  id: string;
  ownerToken: string;
  roundSecret: string;
  /** Where this device's R2 bucket and Durable Objects persist. */
  stateDir: string;
  /** wrangler.toml vars to override (PIECE_BATCHES, UPLOAD_ATTEMPTS, LABELS, ...). */
  vars?: Record<string, string>;
}

export interface RunningDevice {
  id: string;
  url: URL;
  ownerToken: string;
  roundSecret: string;
  /** Uploads JSON-lines rows as this device's owner; throws with the worker's message unless it is stored. */
  uploadShard(name: string, rows: readonly object[], labels?: readonly string[]): Promise<void>;
  stop(): Promise<void>;
}

const LOCAL = resolve(LOCAL_DIR, 'wrangler');

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

export async function startDevice(options: DeviceOptions): Promise<RunningDevice> {
  offlineWranglerEnv();
  await mkdir(process.env.TMPDIR!, { recursive: true });
  const { unstable_startWorker } = await import('wrangler');
  const text = (value: string) => ({ type: 'plain_text' as const, value });
  const secret = (value: string) => ({ type: 'secret_text' as const, value });
  const worker = await unstable_startWorker({
    config: resolve('wrangler.toml'),
    bindings: {
      DEVICE_ID: text(options.id),
      OWNER_TOKEN: secret(options.ownerToken),
      ROUND_SECRET: secret(options.roundSecret),
      ...Object.fromEntries(Object.entries(options.vars ?? {}).map(([k, v]) => [k, text(v)])),
    },
    dev: { server: { hostname: '127.0.0.1', port: 0 }, inspector: false, persist: resolve(options.stateDir), watch: false },
  });
  await worker.ready;
  const url = await worker.url;
  return {
    id: options.id,
    url,
    ownerToken: options.ownerToken,
    roundSecret: options.roundSecret,
    uploadShard: async (name, rows, labels) => {
      const query = `format=jsonl${labels ? `&labels=${labels.map(encodeURIComponent).join(',')}` : ''}`;
      const body = rows.map((r) => JSON.stringify(r)).join('\n');
      const res = await fetch(new URL(`/shards/${encodeURIComponent(name)}?${query}`, url), { method: 'PUT', headers: { authorization: `Bearer ${options.ownerToken}` }, body });
      if (res.status !== 201) throw new Error(`uploading shard '${name}' to ${options.id}: HTTP ${res.status} ${await res.text()}`);
    },
    stop: () => worker.dispose(),
  };
}
