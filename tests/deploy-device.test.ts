/**
 * npm run deploy:device as an operator runs it: with no Cloudflare account here, what is tested is everything before
 * the platform is asked to change anything (the checks, the dry run's commands, and the refusal when not logged in).
 */
import { execFile } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localTempDir } from '../infra/local/paths.ts';

let dir: string;
let config: string;

beforeAll(async () => {
  dir = await localTempDir('deploy-device');
  config = join(dir, 'wrangler.toml');
  // The shipped file, filled in as an operator would; wrangler reads `main` and the aliases' paths relative to the file.
  const text = (await readFile('wrangler.toml', 'utf8'))
    .replaceAll('<ACCOUNT_ID>', '0123abcd')
    .replace(/^main = .*$/m, `main = ${JSON.stringify(resolve('workers/device/src/index.ts'))}`)
    .replace(/= "(\.\/[^"]+)"/g, (_, path: string) => `= ${JSON.stringify(resolve(path))}`);
  await writeFile(config, text);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function deploy(args: string[], env: Record<string, string | undefined>) {
  const clean = { ...process.env, CLOUDFLARE_API_TOKEN: undefined, CLOUDFLARE_ACCOUNT_ID: undefined, XDG_CONFIG_HOME: join(dir, 'config'), ...env };
  try {
    const { stdout, stderr } = await promisify(execFile)('npm', ['run', '--silent', 'deploy:device', '--', ...args], { env: clean });
    return { code: 0, out: stdout + stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, out: err.stdout + err.stderr };
  }
}

describe('npm run deploy:device', () => {
  it('refuses the shipped placeholders and a missing master secret together, before anything is built or changed', async () => {
    const r = await deploy(['--env', 'device-eu-1'], { SPLITFROZEN_ROUND_SECRET: undefined });
    expect(r.code).toBe(2);
    expect(r.out).toContain('[env.device-eu-1] STORAGE_ORIGINS holds a placeholder (<ACCOUNT_ID>)');
    expect(r.out).toContain('SPLITFROZEN_ROUND_SECRET is not set');
    expect(r.out).not.toContain('wrangler r2');
  });

  it('checks a filled-in environment, builds it, and prints the commands it would run', async () => {
    const r = await deploy(['--env', 'device-eu-1', '--config', config, '--dry-run'], { SPLITFROZEN_ROUND_SECRET: 'master' });
    expect(r.code).toBe(0);
    expect(r.out).toMatch(
      /splitfrozen-device-eu-1 \(device device-eu-1\): [\d.]+ MB gzipped; bucket splitfrozen-device-eu-1-shards \(eu\); placed near aws:eu-central-1/,
    );
    expect(r.out).toContain('would run: wrangler r2 bucket create splitfrozen-device-eu-1-shards --jurisdiction eu');
    expect(r.out).toContain('would run: wrangler deploy --env device-eu-1 --secrets-file <secrets file>');
  });

  it('stops before the first change when not logged in', async () => {
    const r = await deploy(['--env', 'device-us-1', '--config', config], { SPLITFROZEN_ROUND_SECRET: 'master' });
    expect(r.code).toBe(2);
    expect(r.out).toContain('not logged in to Cloudflare: npx wrangler login, or set CLOUDFLARE_API_TOKEN');
    expect(r.out).not.toMatch(/^wrangler (r2|secret|deploy)/m);
  });
});
