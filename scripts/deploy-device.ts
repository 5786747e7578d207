/**
 * npm run deploy:device -- --env NAME [--dry-run]: deploys one device worker (its private shard bucket, then the
 * worker with its secrets in one deploy). Everything it needs is checked before anything is changed: the environment
 * in wrangler.toml, the master round secret, the bundle's size, and the login; each platform command runs with its
 * output shown, and the first that fails stops the deploy with the platform's own message.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { deviceSecret } from '../core/auth/signing.ts';
import { measureBundle } from '../infra/deploy/bundle.ts';
import { checkDeviceEnv, deploySteps, readWranglerToml, secretsToSet, DeployError } from '../infra/deploy/device-env.ts';
import { cliArgs } from '../infra/cli.ts';

const USAGE = `usage: npm run deploy:device -- --env NAME [--config wrangler.toml] [--dry-run]
Deploys the device of [env.NAME]: creates its shard bucket, then deploys the worker with its secrets (ROUND_SECRET
derived from SPLITFROZEN_ROUND_SECRET; OWNER_TOKEN and DEFENCE_SECRET made the first time only, or OWNER_TOKEN from
DEPLOY_OWNER_TOKEN to replace the owner's token on purpose). A new owner token is written to
.local/owner-tokens/NAME.token (readable by you alone), never printed.
--dry-run checks the configuration, the master secret and the bundle, and prints the commands (not the login).
Needs: SPLITFROZEN_ROUND_SECRET (the training server's master secret), and npx wrangler login or CLOUDFLARE_API_TOKEN.
exit codes: 0 deployed (or checked); 1 the platform refused a step (its message is printed); 2 a setting to fix.`;

// The operator's own environment, as it was: the bundle measurement points wrangler's folders into .local/ for
// itself, and the platform commands must find the operator's login where wrangler keeps it.
const operatorEnv = { ...process.env };
const args = cliArgs(USAGE, { env: { type: 'string' }, config: { type: 'string' }, 'dry-run': { type: 'boolean' } });
const file = args.config ?? 'wrangler.toml';
const wrangler = resolve('node_modules/wrangler/bin/wrangler.js');
// Wrangler's children get no secret of ours.
const { SPLITFROZEN_ROUND_SECRET: master, DEPLOY_OWNER_TOKEN: givenToken, ...childEnv } = operatorEnv;

function refuse(message: string, code = 2): never {
  console.error(`error: ${message}`);
  process.exit(code);
}

/** A wrangler command's exit status, stdout and stderr, in the operator's environment. */
function wranglerRun(argv: string[]) {
  const r = spawnSync(process.execPath, [wrangler, ...argv, '--config', file], { encoding: 'utf8', env: childEnv });
  return { status: r.status, stdout: (r.stdout ?? '').trim(), stderr: (r.stderr ?? '').trim() };
}

/** A platform step: its output shown; a failure ends the deploy with the platform's message. */
function platform(argv: string[], allow?: RegExp): void {
  const r = wranglerRun(argv);
  const said = [r.stdout, r.stderr].filter(Boolean).join('\n');
  if (r.status !== 0 && !(allow && allow.test(said))) refuse(`wrangler ${argv.join(' ')} failed (exit ${r.status}):\n${said}`, 1);
  if (said) console.log(said.replace(/^/gm, '  '));
}

/** The secrets the Worker has: none where it was never deployed; anything else unreadable stops the deploy. */
function existingSecrets(env: string): string[] {
  const r = wranglerRun(['secret', 'list', '--env', env, '--format', 'json']);
  if (r.status !== 0) {
    if (/10007|does not exist|not found/i.test(`${r.stdout}\n${r.stderr}`)) return [];
    refuse(`wrangler secret list --env ${env} failed (exit ${r.status}):\n${r.stdout}\n${r.stderr}`.trim(), 1);
  }
  try {
    return (JSON.parse(r.stdout) as Array<{ name: string }>).map((s) => s.name);
  } catch {
    return refuse(`wrangler secret list --env ${env} answered what is not a list of secrets; nothing was changed:\n${r.stdout}`, 1);
  }
}

async function main(): Promise<void> {
  let plan;
  const problems: string[] = [];
  try {
    plan = checkDeviceEnv(readWranglerToml(readFileSync(file, 'utf8'), file), args.env, file);
  } catch (e) {
    if (!(e instanceof DeployError)) throw e;
    problems.push(e.message);
  }
  if (!master) problems.push("SPLITFROZEN_ROUND_SECRET is not set: the training server's master round secret (the device gets its own, derived)");
  if (problems.length || !plan) refuse(problems.join('\n'));
  for (const note of plan.notes) console.log(`note: ${note}`);
  const size = await measureBundle(plan.env, file);
  if (!size.fits) refuse(`the worker is ${(size.totalGzipBytes / 2 ** 20).toFixed(2)} MB gzipped, over the ${size.limitGzipBytes / 2 ** 20} MB limit`);
  console.log(
    `${plan.name} (device ${plan.deviceId}): ${(size.totalGzipBytes / 2 ** 20).toFixed(2)} MB gzipped; bucket ${plan.bucket}${plan.jurisdiction ? ` (${plan.jurisdiction})` : ''}${plan.placement ? `; placed near ${plan.placement}` : ''}`,
  );
  if (args['dry-run']) {
    for (const step of deploySteps(plan, '<secrets file>')) console.log(`would run: wrangler ${step.join(' ')}`);
    console.log(
      `with secrets: ROUND_SECRET, and OWNER_TOKEN and DEFENCE_SECRET where the Worker has none yet${givenToken ? ' (OWNER_TOKEN replaced: DEPLOY_OWNER_TOKEN is set)' : ''}`,
    );
    return;
  }
  const who = wranglerRun(['whoami']);
  if (who.status !== 0 || !/you are logged in/i.test(`${who.stdout}\n${who.stderr}`))
    refuse(`not logged in to Cloudflare: npx wrangler login, or set CLOUDFLARE_API_TOKEN\n${[who.stdout, who.stderr].filter(Boolean).join('\n')}`);
  const names = secretsToSet(existingSecrets(plan.env), Boolean(givenToken));
  const ownerToken = givenToken || randomBytes(24).toString('hex');
  const values: Record<string, string> = {
    OWNER_TOKEN: ownerToken,
    ROUND_SECRET: await deviceSecret(master!, plan.deviceId),
    DEFENCE_SECRET: randomBytes(32).toString('hex'),
  };
  // The secrets go up with the deploy itself, from a file only this user can read, removed afterwards.
  const dir = mkdtempSync(join(tmpdir(), 'splitfrozen-deploy-'));
  const secretsFile = join(dir, 'secrets.json');
  try {
    writeFileSync(secretsFile, JSON.stringify(Object.fromEntries(names.map((n) => [n, values[n]]))), { mode: 0o600 });
    for (const step of deploySteps(plan, secretsFile)) {
      console.log(`wrangler ${step.join(' ').replace(secretsFile, '<secrets file>')}  (secrets: ${step[0] === 'deploy' ? names.join(', ') : 'none'})`);
      platform(step, step[0] === 'r2' ? /already exists/i : undefined);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  if (names.includes('OWNER_TOKEN') && !givenToken) {
    const tokens = resolve('.local', 'owner-tokens');
    mkdirSync(tokens, { recursive: true, mode: 0o700 });
    const at = join(tokens, `${plan.env}.token`);
    writeFileSync(at, `${ownerToken}\n`, { mode: 0o600 });
    chmodSync(at, 0o600);
    console.log(`the owner token of ${plan.deviceId} is in ${at} (readable by you alone): give it to the device's owner, then delete it`);
  }
}

main().catch((e: Error) => refuse(e.message, e instanceof DeployError ? 2 : 1));
