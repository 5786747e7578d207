/**
 * Builds the device worker exactly as `wrangler deploy` would (`--dry-run`), and measures what Cloudflare counts
 * against the script size limit: the gzipped size of every uploaded module; and lists the npm packages bundled,
 * whose modules the Worker evaluates at its start, in its 128 MB.
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
  /** The npm packages the bundle holds code of (from its source map), by name. */
  packages: string[];
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
    const maps = (await readdir(out)).filter((n) => n.endsWith('.map'));
    const sources = (await Promise.all(maps.map(async (n) => JSON.parse(await readFile(join(out, n), 'utf8')).sources as string[]))).flat();
    // The innermost node_modules folder names the package: a dependency's own dependencies sit inside it.
    const packages = new Set(sources.map((s) => /.*node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(s)?.[1]).filter((p) => p !== undefined));
    return {
      env: env || '(top level)',
      files,
      totalBytes: files.reduce((a, f) => a + f.bytes, 0),
      totalGzipBytes,
      limitGzipBytes: PAID_PLAN_LIMIT_BYTES,
      fits: totalGzipBytes <= PAID_PLAN_LIMIT_BYTES,
      packages: [...packages].sort(),
    };
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}
