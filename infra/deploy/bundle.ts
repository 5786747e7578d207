/**
 * Builds the device worker exactly as `wrangler deploy` would (`--dry-run`), and measures what Cloudflare counts
 * against the script size limit: the gzipped size of every uploaded module.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { offlineWranglerEnv } from '../local/device.ts';
import { localTempDir } from '../local/paths.ts';

/** The Workers paid plan's limit on a script's compressed size. */
export const PAID_PLAN_LIMIT_BYTES = 10 * 2 ** 20;

export interface BundleSize {
  env: string;
  files: Array<{ name: string; bytes: number; gzipBytes: number }>;
  totalBytes: number;
  totalGzipBytes: number;
  limitGzipBytes: number;
  fits: boolean;
}

export async function measureBundle(env = '', config = 'wrangler.toml'): Promise<BundleSize> {
  offlineWranglerEnv();
  const out = await localTempDir('bundle');
  try {
    const wrangler = resolve('node_modules/wrangler/bin/wrangler.js');
    await promisify(execFile)(process.execPath, [wrangler, 'deploy', '--dry-run', '--outdir', out, `--env=${env}`, '--config', config], { env: process.env });
    const files = [];
    for (const name of (await readdir(out)).filter((n) => !n.endsWith('.map') && n !== 'README.md')) {
      const bytes = await readFile(join(out, name));
      files.push({ name, bytes: bytes.byteLength, gzipBytes: gzipSync(bytes, { level: 9 }).byteLength });
    }
    const totalGzipBytes = files.reduce((a, f) => a + f.gzipBytes, 0);
    return {
      env: env || '(top level)',
      files,
      totalBytes: files.reduce((a, f) => a + f.bytes, 0),
      totalGzipBytes,
      limitGzipBytes: PAID_PLAN_LIMIT_BYTES,
      fits: totalGzipBytes <= PAID_PLAN_LIMIT_BYTES,
    };
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}
