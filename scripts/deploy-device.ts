/**
 * npm run deploy:device -- --env NAME [--dry-run]: deploys one device worker (its private shard bucket, its secrets,
 * the worker). Everything it needs is checked before anything is changed: the environment in wrangler.toml, the
 * master round secret, the bundle's size, and the login; then each platform command runs with its output shown, and
 * the first that fails stops the deploy with the platform's own message.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { deviceSecret } from '../core/auth/signing.ts';
import { measureBundle } from '../infra/deploy/bundle.ts';
import { checkDeviceEnv, deploySteps, readWranglerToml, DeployError } from '../infra/deploy/device-env.ts';
import { cliArgs } from '../infra/cli.ts';

const USAGE = `usage: npm run deploy:device -- --env NAME [--config wrangler.toml] [--dry-run]
Deploys the device of [env.NAME]: creates its shard bucket, sets its secrets (OWNER_TOKEN the first time, or from
OWNER_TOKEN in the environment; ROUND_SECRET derived from SPLITFROZEN_ROUND_SECRET; DEFENCE_SECRET the first time)
and deploys it. --dry-run checks everything and prints the commands without running them.
Needs: SPLITFROZEN_ROUND_SECRET (the training server's master secret), and npx wrangler login or CLOUDFLARE_API_TOKEN.
exit codes: 0 deployed (or checked); 1 the platform refused a step (its message is printed); 2 a setting to fix.`;

const args = cliArgs(USAGE, { env: { type: 'string' }, config: { type: 'string' }, 'dry-run': { type: 'boolean' } });
const file = args.config ?? 'wrangler.toml';
const wrangler = resolve('node_modules/wrangler/bin/wrangler.js');

function refuse(message: string, code = 2): never {
  console.error(`error: ${message}`);
  process.exit(code);
}

/** A wrangler command: its output shown; a failure ends the deploy with the platform's message. */
function platform(argv: string[], input?: string, allow?: RegExp): string {
  const r = spawnSync(process.execPath, [wrangler, ...argv, '--config', file], { input, encoding: 'utf8', env: process.env });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
  if (r.status !== 0 && !(allow && allow.test(out))) refuse(`wrangler ${argv.join(' ')} failed (exit ${r.status}):\n${out}`, 1);
  return out;
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
  const master = process.env.SPLITFROZEN_ROUND_SECRET;
  if (!master) problems.push("SPLITFROZEN_ROUND_SECRET is not set: the training server's master round secret (the device gets its own, derived)");
  if (problems.length || !plan) refuse(problems.join('\n'));
  for (const note of plan.notes) console.log(`note: ${note}`);
  const size = await measureBundle(plan.env, file);
  if (!size.fits) refuse(`the worker is ${(size.totalGzipBytes / 2 ** 20).toFixed(2)} MB gzipped, over the ${size.limitGzipBytes / 2 ** 20} MB limit`);
  console.log(
    `${plan.name} (device ${plan.deviceId}): ${(size.totalGzipBytes / 2 ** 20).toFixed(2)} MB gzipped; bucket ${plan.bucket}${plan.jurisdiction ? ` (${plan.jurisdiction})` : ''}${plan.placement ? `; placed near ${plan.placement}` : ''}`,
  );
  if (args['dry-run']) {
    for (const step of deploySteps(plan, [], Boolean(process.env.OWNER_TOKEN))) console.log(`would run: wrangler ${step.join(' ')}`);
    return;
  }
  const who = spawnSync(process.execPath, [wrangler, 'whoami'], { encoding: 'utf8', env: process.env });
  const whoSaid = `${who.stdout ?? ''}${who.stderr ?? ''}`.trim();
  if (who.status !== 0 || !/you are logged in/i.test(whoSaid))
    refuse(`not logged in to Cloudflare: npx wrangler login, or set CLOUDFLARE_API_TOKEN\n${whoSaid}`);
  const listed = platform(['secret', 'list', '--env', plan.env, '--format', 'json'], undefined, /not found|does not exist|10007/i);
  const secrets = listed.startsWith('[') ? (JSON.parse(listed) as Array<{ name: string }>).map((s) => s.name) : [];
  const ownerToken = process.env.OWNER_TOKEN || randomBytes(24).toString('hex');
  const values: Record<string, string> = {
    OWNER_TOKEN: ownerToken,
    ROUND_SECRET: await deviceSecret(master!, plan.deviceId),
    DEFENCE_SECRET: randomBytes(32).toString('hex'),
  };
  for (const step of deploySteps(plan, secrets, Boolean(process.env.OWNER_TOKEN))) {
    console.log(`wrangler ${step.join(' ')}`);
    const out = platform(step, step[0] === 'secret' ? values[step[2]!] : undefined, step[0] === 'r2' ? /already exists/i : undefined);
    if (out) console.log(out.replace(/^/gm, '  '));
    if (step[0] === 'secret' && step[2] === 'OWNER_TOKEN' && !process.env.OWNER_TOKEN)
      console.log(`owner token of ${plan.deviceId}: ${ownerToken}  (give it to the device's owner; it is not shown again)`);
  }
}

main().catch((e: Error) => refuse(e.message, e instanceof DeployError ? 2 : 1));
