/**
 * A device's deployment read from wrangler.toml (with a TOML parser) and checked before anything is changed: the
 * environment named, its vars ones the worker accepts (checked by the worker's own settings code), no placeholder
 * left, its shard bucket, Durable Objects, required secrets and observability declared, and no two environments
 * sharing a device id or a bucket. Every problem is reported at once, each with its fix.
 */
import { parse, TomlError } from 'smol-toml';
import { knownHint } from '../../core/json/suggest.ts';
import { DEVICE_SECRETS, DEVICE_VARS, deviceSettings, type DeviceVars } from '../../workers/device/src/settings.ts';

/** R2's jurisdictions: a bucket created in one keeps its objects there. */
export const JURISDICTIONS = ['eu', 'fedramp'];
const PLACEHOLDER = /<[^>]*>|ACCOUNT_ID|example\.(com|org|dev)/i;
const DURABLE_OBJECTS = { ROUNDS: 'RoundRunner', NONCES: 'NonceGuard' };

export interface DevicePlan {
  env: string;
  /** The Worker's name. */
  name: string;
  deviceId: string;
  bucket: string;
  jurisdiction?: string;
  /** Where the platform places the Worker (a cloud region id), or undefined: anywhere. */
  placement?: string;
  /** What will work but an operator should know. */
  notes: string[];
}

export class DeployError extends Error {}

type Table = Record<string, unknown>;
const table = (v: unknown): Table => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Table) : {});
const list = <T = Table>(v: unknown): T[] => (Array.isArray(v) ? (v as T[]) : []);

/** wrangler.toml as data, or a DeployError at the line and column where it stops being TOML. */
export function readWranglerToml(text: string, file = 'wrangler.toml'): Table {
  try {
    return parse(text) as Table;
  } catch (e) {
    if (e instanceof TomlError) throw new DeployError(`${file}: not valid TOML at line ${e.line}, column ${e.column}`);
    throw e;
  }
}

function bucketOf(e: Table): Table | undefined {
  return list(e.r2_buckets).find((b) => b.binding === 'SHARDS');
}

/** The named environment's deployment, or a DeployError listing every problem. */
export function checkDeviceEnv(config: Table, env: string | undefined, file = 'wrangler.toml'): DevicePlan {
  const envs = table(config.env);
  const names = Object.keys(envs);
  if (!env)
    throw new DeployError(
      `name the device's environment: --env <name> (${file} has ${names.join(', ') || 'none'}); the top level is the local device, never deployed`,
    );
  if (!Object.hasOwn(envs, env)) throw new DeployError(`${file} has no [env.${env}]: ${knownHint(env, names, 'its environments are')}`);
  const e = table(envs[env]);
  const at = `[env.${env}]`;
  const problems: string[] = [];
  const notes: string[] = [];

  const name = typeof e.name === 'string' ? e.name : '';
  if (!name || name === config.name) problems.push(`${at} name: give the Worker its own name (e.g. "splitfrozen-${env}"), not the top level's`);
  if (e.workers_dev !== true && !e.routes && !e.route)
    problems.push(`${at}: set workers_dev = true or routes; without either nothing reaches the deployed device`);

  const vars = table(e.vars);
  const bucket = bucketOf(e);
  for (const key of Object.keys(vars)) {
    if ((DEVICE_SECRETS as readonly string[]).includes(key))
      problems.push(`${at} vars.${key} is a secret: remove it here; deploy:device sets it with wrangler secret put`);
    else if (!(DEVICE_VARS as readonly string[]).includes(key))
      problems.push(`${at} vars.${key} is not a device setting: ${knownHint(key, DEVICE_VARS, 'the settings are')}`);
  }
  const placeholders = Object.entries({ ...vars, name, bucket_name: bucket?.bucket_name }).filter(([, v]) => typeof v === 'string' && PLACEHOLDER.test(v));
  for (const [key, v] of placeholders) problems.push(`${at} ${key} holds a placeholder (${String(v).match(PLACEHOLDER)![0]}): replace it with the real value`);
  if (!placeholders.length) {
    try {
      // The worker's own checks, as it will run them (secrets stand in: they are set apart).
      const settings = deviceSettings({ ...(vars as Partial<DeviceVars>), OWNER_TOKEN: 'set apart' } as DeviceVars);
      if (settings.storageOrigins.some((o) => o.startsWith('http:')))
        problems.push(`${at} vars.STORAGE_ORIGINS: a deployed device reaches no 127.0.0.1; list the storage's https origin`);
      if (settings.storageOrigins.length === 0)
        problems.push(`${at} vars.STORAGE_ORIGINS is empty: list the storage's https origin, or the device uploads nowhere`);
    } catch (err) {
      problems.push(`${at} vars: ${(err as Error).message}`);
    }
  }

  if (typeof bucket?.bucket_name !== 'string' || !bucket.bucket_name)
    problems.push(`${at} r2_buckets: bind SHARDS to the device's own bucket ({ binding = "SHARDS", bucket_name = "splitfrozen-${env}-shards" })`);
  const jurisdiction = bucket?.jurisdiction as string | undefined;
  if (jurisdiction !== undefined && !JURISDICTIONS.includes(jurisdiction))
    problems.push(`${at} r2_buckets SHARDS jurisdiction is ${JSON.stringify(jurisdiction)}: use ${JURISDICTIONS.join(' or ')}, or remove it`);

  const bound = list(table(e.durable_objects).bindings);
  for (const [binding, cls] of Object.entries(DURABLE_OBJECTS))
    if (!bound.some((b) => b.name === binding && b.class_name === cls))
      problems.push(`${at} durable_objects.bindings lacks { name = "${binding}", class_name = "${cls}" } (environments do not inherit them)`);

  const required = list<string>(table(e.secrets).required);
  const missing = DEVICE_SECRETS.filter((s) => !required.includes(s));
  if (missing.length) problems.push(`${at} secrets.required lacks ${missing.join(', ')}: declare ${JSON.stringify([...DEVICE_SECRETS])} (not inherited)`);
  if (table(e.observability).enabled !== true && table(config.observability).enabled !== true)
    problems.push(`${at}: set observability = { enabled = true }, or a failing device leaves no log`);

  const placement = table(e.placement);
  if (typeof placement.region === 'string' && !/^(aws|gcp|azure):[a-z0-9-]+$/.test(placement.region))
    problems.push(`${at} placement.region is ${JSON.stringify(placement.region)}: a cloud region id such as "aws:eu-central-1"`);
  if (!e.placement)
    notes.push(`${at} has no placement: the Worker runs wherever a request lands (placement = { region = "aws:<region>" } runs it near the storage)`);
  if (!jurisdiction) notes.push(`${at}'s shard bucket has no jurisdiction: R2 keeps it where it chooses (jurisdiction = "eu" keeps the text in the EU)`);

  const deviceId = typeof vars.DEVICE_ID === 'string' ? vars.DEVICE_ID : '';
  for (const other of names.filter((n) => n !== env)) {
    const o = table(envs[other]);
    if (deviceId && table(o.vars).DEVICE_ID === deviceId)
      problems.push(`${at} vars.DEVICE_ID "${deviceId}" is also [env.${other}]'s: each device needs its own`);
    if (bucket?.bucket_name && bucketOf(o)?.bucket_name === bucket.bucket_name)
      problems.push(`${at} shard bucket "${String(bucket.bucket_name)}" is also [env.${other}]'s: each device keeps its own`);
  }
  if (problems.length) throw new DeployError(`${file} ${at} cannot be deployed; ${problems.length} to fix:\n  ${problems.join('\n  ')}`);
  return { env, name, deviceId, bucket: bucket!.bucket_name as string, jurisdiction, placement: placement.region as string | undefined, notes };
}

/** The secrets a deploy sets: the round secret always, the owner's token and the defence key only the first time. */
export function secretsToSet(existing: readonly string[], ownerTokenGiven: boolean): string[] {
  return [
    // The owner's token is made once: deploying again must not lock the owner out of their device.
    ...(ownerTokenGiven || !existing.includes('OWNER_TOKEN') ? ['OWNER_TOKEN'] : []),
    'ROUND_SECRET',
    // The key of the defence's draws is made once: a new key would let a server average old and new uploads of a row.
    ...(existing.includes('DEFENCE_SECRET') ? [] : ['DEFENCE_SECRET']),
  ];
}

/**
 * The platform commands a deploy runs, in order: the shard bucket, then the Worker with its secrets in one deploy
 * (`--secrets-file`), so a failed deploy leaves the running version and its secrets as they were.
 */
export function deploySteps(plan: DevicePlan, secretsFile: string): string[][] {
  return [
    ['r2', 'bucket', 'create', plan.bucket, ...(plan.jurisdiction ? ['--jurisdiction', plan.jurisdiction] : [])],
    ['deploy', '--env', plan.env, '--secrets-file', secretsFile],
  ];
}
