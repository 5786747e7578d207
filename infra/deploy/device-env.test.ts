import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkDeviceEnv, deploySteps, readWranglerToml, secretsToSet } from './device-env.ts';

const shipped = readFileSync('wrangler.toml', 'utf8');
/** The shipped configuration with its placeholders filled in, as an operator would. */
const filled = shipped.replaceAll('<ACCOUNT_ID>', '0123abcd');
const problems = (text: string, env: string | undefined) => {
  try {
    checkDeviceEnv(readWranglerToml(text), env);
    return [];
  } catch (e) {
    return (e as Error).message
      .split('\n')
      .slice(1)
      .map((l) => l.trim());
  }
};

describe('a device deployment read from wrangler.toml', () => {
  it('keeps the top level local and inert: no workers.dev URL, no route, and no deploy without an environment', () => {
    const config = readWranglerToml(shipped);
    expect([config.workers_dev, config.preview_urls, config.routes, config.route]).toEqual([false, false, undefined, undefined]);
    expect(() => checkDeviceEnv(config, undefined)).toThrow(
      "name the device's environment: --env <name> (wrangler.toml has device-eu-1, device-us-1); the top level is the local device, never deployed",
    );
    expect(() => checkDeviceEnv(config, 'device-eu1')).toThrow("wrangler.toml has no [env.device-eu1]: did you mean 'device-eu-1'?");
  });

  it('refuses the shipped placeholders, and takes both example regions once they are filled in', () => {
    expect(problems(shipped, 'device-eu-1')).toEqual(['[env.device-eu-1] STORAGE_ORIGINS holds a placeholder (<ACCOUNT_ID>): replace it with the real value']);
    const eu = checkDeviceEnv(readWranglerToml(filled), 'device-eu-1');
    expect(eu).toMatchObject({
      name: 'splitfrozen-device-eu-1',
      deviceId: 'device-eu-1',
      bucket: 'splitfrozen-device-eu-1-shards',
      jurisdiction: 'eu',
      placement: 'aws:eu-central-1',
    });
    expect(eu.notes).toEqual([]);
    const us = checkDeviceEnv(readWranglerToml(filled), 'device-us-1');
    expect([us.placement, us.jurisdiction, us.notes.length]).toEqual(['aws:us-east-1', undefined, 1]);
  });

  it('names every problem of an environment at once, each with its fix', () => {
    const broken = filled
      .replace(
        'STORAGE_ORIGINS = "https://0123abcd.r2.cloudflarestorage.com", LABELS',
        'STORAGE_ORIGIN = "https://0123abcd.r2.cloudflarestorage.com", OWNER_TOKEN = "t", LABELS',
      )
      .replace(
        'secrets = { required = ["OWNER_TOKEN", "ROUND_SECRET", "DEFENCE_SECRET"] }\nobservability = { enabled = true }\n\n[env.device-us-1]',
        '\n[env.device-us-1]',
      )
      .replace('jurisdiction = "eu"', 'jurisdiction = "europe"')
      .replace('placement = { region = "aws:eu-central-1" }', 'placement = { region = "frankfurt" }')
      .replace('DEVICE_ID = "device-us-1"', 'DEVICE_ID = "device-eu-1"');
    const found = problems(broken, 'device-eu-1');
    expect(found).toEqual([
      "[env.device-eu-1] vars.STORAGE_ORIGIN is not a device setting: did you mean 'STORAGE_ORIGINS'?",
      '[env.device-eu-1] vars.OWNER_TOKEN is a secret: remove it here; deploy:device sets it with wrangler secret put',
      "[env.device-eu-1] vars.STORAGE_ORIGINS is empty: list the storage's https origin, or the device uploads nowhere",
      '[env.device-eu-1] r2_buckets SHARDS jurisdiction is "europe": use eu or fedramp, or remove it',
      '[env.device-eu-1] secrets.required lacks OWNER_TOKEN, ROUND_SECRET, DEFENCE_SECRET: declare ["OWNER_TOKEN","ROUND_SECRET","DEFENCE_SECRET"] (not inherited)',
      '[env.device-eu-1] placement.region is "frankfurt": a cloud region id such as "aws:eu-central-1"',
      '[env.device-eu-1] vars.DEVICE_ID "device-eu-1" is also [env.device-us-1]\'s: each device needs its own',
    ]);
    // A local storage origin, or a setting the worker itself would refuse, is refused before the deploy.
    expect(
      problems(
        filled.replace(
          'https://0123abcd.r2.cloudflarestorage.com", LABELS = "0,1", PIECE_BATCHES = "4", UPLOAD_ATTEMPTS = "4" }\nr2_buckets = [{ binding = "SHARDS", bucket_name = "splitfrozen-device-eu-1-shards"',
          'http://127.0.0.1:9000", LABELS = "0,1", PIECE_BATCHES = "4", UPLOAD_ATTEMPTS = "4" }\nr2_buckets = [{ binding = "SHARDS", bucket_name = "splitfrozen-device-eu-1-shards"',
        ),
        'device-eu-1',
      ),
    ).toEqual(["[env.device-eu-1] vars.STORAGE_ORIGINS: a deployed device reaches no 127.0.0.1; list the storage's https origin"]);
    expect(
      problems(
        filled.replace(
          'MIN_CUT = "2", STORAGE_ORIGINS = "https://0123abcd.r2.cloudflarestorage.com", LABELS = "0,1", PIECE_BATCHES = "4", UPLOAD_ATTEMPTS = "4" }\nr2_buckets = [{ binding = "SHARDS", bucket_name = "splitfrozen-device-eu',
          'MIN_CUT = "0", STORAGE_ORIGINS = "https://0123abcd.r2.cloudflarestorage.com", LABELS = "0,1", PIECE_BATCHES = "4", UPLOAD_ATTEMPTS = "4" }\nr2_buckets = [{ binding = "SHARDS", bucket_name = "splitfrozen-device-eu',
        ),
        'device-eu-1',
      ),
    ).toEqual(['[env.device-eu-1] vars: MIN_CUT is "0": set an integer >= 1 (default 2)']);
  });

  it('reads the file with a TOML parser: a syntax error is refused at its line and column', () => {
    expect(() => readWranglerToml('name = "x"\n[vars]\nDEVICE_ID = "a\n')).toThrow(/^wrangler.toml: not valid TOML at line 3, column \d+$/);
    // A regex over the text took a bucket_name from a comment or from the next environment; the parser cannot.
    const commented = filled.replace('[env.device-us-1]', '# r2_buckets = [{ binding = "SHARDS", bucket_name = "from-a-comment" }]\n[env.device-us-1]');
    expect(checkDeviceEnv(readWranglerToml(commented), 'device-us-1').bucket).toBe('splitfrozen-device-us-1-shards');
  });

  it('creates the bucket in its jurisdiction, then deploys with its secrets in one step; secrets made once stay', () => {
    const plan = checkDeviceEnv(readWranglerToml(filled), 'device-eu-1');
    expect(deploySteps(plan, '/tmp/s.json').map((s) => s.join(' '))).toEqual([
      'r2 bucket create splitfrozen-device-eu-1-shards --jurisdiction eu',
      'deploy --env device-eu-1 --secrets-file /tmp/s.json',
    ]);
    expect(secretsToSet([], false)).toEqual(['OWNER_TOKEN', 'ROUND_SECRET', 'DEFENCE_SECRET']);
    // Deployed again: the owner's token and the defence key stay as they are, unless a new owner token is given.
    expect(secretsToSet(['OWNER_TOKEN', 'ROUND_SECRET', 'DEFENCE_SECRET'], false)).toEqual(['ROUND_SECRET']);
    expect(secretsToSet(['OWNER_TOKEN', 'ROUND_SECRET', 'DEFENCE_SECRET'], true)).toEqual(['OWNER_TOKEN', 'ROUND_SECRET']);
  });
});
