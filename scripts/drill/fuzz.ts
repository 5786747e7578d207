/**
 * Malformed requests, fuzzed from valid ones: each breaks at least one rule (a field of the wrong type or out of
 * range, a name that is not one, a body that is not what the route takes), with random noise on top. The server and
 * the device must answer each with a 4xx naming the problem, and nothing they hold may change.
 */
import { request } from 'node:http';
import { signRequest, deviceSecret } from '../../core/auth/signing.ts';
import { Random } from '../../core/random.ts';
import type { RoundRequest } from '../../core/wire/round.ts';
import type { RunningDevice } from '../../infra/local/device.ts';

export interface FuzzResult {
  sent: number;
  status5xx: number;
  /** Requests answered with 2xx although each broke a rule. */
  accepted: number;
  /** Things that differ between the snapshots before and after (runs, shards, approvals, objects in storage). */
  stateChanged: number;
  /** The first few 5xx or 2xx answers, to reproduce them. */
  examples: string[];
}

/**
 * A request with its path exactly as given, as curl --path-as-is sends it: fetch would resolve "/runs/.." to "/"
 * before sending, so the server would never see what the drill means to send.
 */
function rawStatus(base: string, method: string, path: string, headers: Record<string, string>): Promise<number> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, method, path, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
const clone = <T>(x: T): T => JSON.parse(JSON.stringify(x));

function setPath(obj: Record<string, Json>, path: string, value: Json): void {
  const parts = path.split('.');
  let at: Record<string, Json> = obj;
  for (const p of parts.slice(0, -1)) {
    if (typeof at[p] !== 'object' || at[p] === null) at[p] = {};
    at = at[p] as Record<string, Json>;
  }
  at[parts.at(-1)!] = value;
}

/** Fields of a run spec and values each must refuse. */
const BAD_SPEC: Array<[string, Json[]]> = [
  ['model', [123, '', ['x'], '/etc', '../../../etc']],
  ['task', ['x', 5]],
  ['task.labels', [[], ['a'], ['a', 'a'], 'ab', [1, 2]]],
  ['task.eval', [5, { path: 5 }, { path: 'x.tsv', format: 'csv' }]],
  ['devices', [[], 'x', [5], [null]]],
  ['devices.0.id', ['../x', '', 5, 'a/b', 'x'.repeat(500)]],
  ['devices.0.url', ['ftp://x', 5, 'javascript:alert(1)']],
  ['devices.0.cut', [-1, 1.5, 'x', 99]],
  ['lora.rank', [0, -1, 1.5, 'x']],
  ['lora.targets', [[], ['nope'], 'attn.c_attn']],
  ['optimizer.lr', [0, -1, 'x']],
  ['optimizer.schedule', ['x', 5]],
  ['training.batchSize', [0, -1, 2.5, 'x']],
  ['training.seqLen', [0, -3]],
  ['training.dtype', ['fp64', 1]],
  ['training.rounds', [0, -1, 1.5]],
  ['ordering.kind', ['x', 5]],
  ['ordering.order', ['x', ['ghost']]],
];

/** Fields of a round request and values each must refuse. */
const BAD_ROUND: Array<[string, Json[]]> = [
  ['runId', ['../x', '', 5, 'a b']],
  ['round', [-1, 1.5, 'x']],
  ['model.sha256', ['x', 5, 'E'.repeat(64)]],
  ['model.url', [5, null]],
  ['cut', [-1, 'x', 1.5]],
  ['batchSize', [0, -1, 'x']],
  ['seqLen', [0, 'x']],
  ['dtype', ['fp64', 5]],
  ['labels', [[], ['a'], 'ab']],
  ['padTokenId', [-1, 'x']],
  ['shards', ['x', [5]]],
  ['uploads.batches', ['x', [5]]],
  ['uploads.manifest', [5, null]],
];

const BAD_BODIES = ['', 'null', '[]', '"s"', '{', '{"model":', '['.repeat(100_000), '\u0000\uffff'];

export async function fuzzRequests(o: {
  serverUrl: string;
  operatorToken: string;
  validSpec: Record<string, Json>;
  device: RunningDevice;
  masterSecret: string;
  validRound: RoundRequest;
  count: number;
  seed: number;
  /** Everything that must not change, as comparable strings. */
  snapshot: () => Promise<string[]>;
}): Promise<FuzzResult> {
  const rng = new Random(o.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng.uniform() * xs.length)];
  const noise = () => Array.from({ length: Math.floor(rng.uniform() * 64) }, () => String.fromCharCode(Math.floor(rng.uniform() * 0xffff))).join('');
  const secret = await deviceSecret(o.masterSecret, o.device.id);
  const operator = { authorization: `Bearer ${o.operatorToken}` };
  const owner = { authorization: `Bearer ${o.device.ownerToken}` };
  const printable = () => Array.from({ length: 1 + Math.floor(rng.uniform() * 40) }, () => String.fromCharCode(32 + Math.floor(rng.uniform() * 95))).join('');
  const badName = () => pick(['..', 'a b', 'x'.repeat(300), '%2e%2e', '<script>', '%00', 'é/ü', `${printable()} !`]);
  const mutated = (valid: Record<string, Json>, table: Array<[string, Json[]]>) => {
    const body = clone(valid);
    const [path, values] = pick(table);
    setPath(body, path, pick(values));
    if (rng.uniform() < 0.5) body[`noise${Math.floor(rng.uniform() * 100)}`] = noise();
    return JSON.stringify(body);
  };
  const cases: Array<() => Promise<[string, number]>> = [
    async () => {
      const body = rng.uniform() < 0.7 ? mutated(o.validSpec, BAD_SPEC) : pick(BAD_BODIES) + noise();
      return [`POST /runs ${body.slice(0, 120)}`, (await fetch(new URL('/runs', o.serverUrl), { method: 'POST', headers: operator, body })).status];
    },
    async () => {
      const path = pick([
        `/runs/${encodeURIComponent(badName())}`,
        `/runs/${encodeURIComponent(badName())}/rounds/${encodeURIComponent(badName())}`,
        `/runs/x/adapters/${encodeURIComponent(badName())}/${encodeURIComponent(badName())}`,
        `/runs/${encodeURIComponent(badName())}/devices/x`,
      ]);
      return [`GET ${path}`, await rawStatus(o.serverUrl, 'GET', path, operator)];
    },
    async () => {
      const path = `/runs/${encodeURIComponent(badName())}/rounds`;
      return [`POST ${path}`, await rawStatus(o.serverUrl, 'POST', path, operator)];
    },
    async () => {
      // A shard upload that breaks a rule: its name, its format, or its content.
      const rule = pick(['name', 'format', 'content']);
      const name = rule === 'name' ? badName() : 'fuzzed';
      const format = rule === 'format' ? pick(['csv', 'xml', '']) : 'jsonl';
      const body =
        rule === 'content'
          ? pick(['{"text":"a"}', '{"label":"0"}', '{"text":5,"label":"0"}', '{"text":"a","label":"9"}', 'not json', noise() + '\n{"text":"a"}'])
          : '{"text":"a","label":"0"}';
      const path = `/shards/${encodeURIComponent(name)}?format=${encodeURIComponent(format)}&labels=0,1`;
      return [`PUT ${path} ${body.slice(0, 80)}`, (await fetch(new URL(path, o.device.url), { method: 'PUT', headers: owner, body })).status];
    },
    async () => {
      const sha = rng.uniform() < 0.3 ? encodeURIComponent(badName()) : 'f'.repeat(64);
      const body = pick([
        '{"model":"x","cut":0}',
        '{"model":"x","cut":1}',
        '{"model":"x","cut":"2"}',
        '{"model":"","cut":2}',
        '{"model":5,"cut":2}',
        '{"model":"x","cut":2,"tokenTable":"x"}',
        'not json',
        pick(BAD_BODIES),
      ]);
      return [
        `PUT /approvals/${sha} ${body.slice(0, 80)}`,
        (await fetch(new URL(`/approvals/${sha}`, o.device.url), { method: 'PUT', headers: owner, body })).status,
      ];
    },
    async () => {
      const body = rng.uniform() < 0.8 ? mutated(o.validRound as unknown as Record<string, Json>, BAD_ROUND) : pick(BAD_BODIES) + noise();
      const headers = { ...(await signRequest(secret, o.device.id, 'POST', '/rounds', body)), 'content-type': 'application/json' };
      return [`POST /rounds ${body.slice(0, 120)}`, (await fetch(new URL('/rounds', o.device.url), { method: 'POST', headers, body })).status];
    },
    async () => {
      const path = `/rounds/${encodeURIComponent(badName())}/${encodeURIComponent(pick(['-1', 'x', '1e99', badName()]))}`;
      const headers = await signRequest(secret, o.device.id, 'GET', path);
      return [`GET ${path}`, (await fetch(new URL(path, o.device.url), { headers })).status];
    },
    async () => [
      `DELETE /shards/<bad>`,
      (await fetch(new URL(`/shards/${encodeURIComponent(badName())}`, o.device.url), { method: 'DELETE', headers: owner })).status,
    ],
  ];
  const before = await o.snapshot();
  let status5xx = 0;
  let accepted = 0;
  const examples: string[] = [];
  for (let i = 0; i < o.count; i++) {
    const [what, status] = await cases[i % cases.length]();
    if (status >= 500) status5xx++;
    if (status < 400) accepted++;
    if ((status >= 500 || status < 400) && examples.length < 5) examples.push(`${status} ${what}`);
  }
  const after = new Set(await o.snapshot());
  const stateChanged = before.filter((x) => !after.has(x)).length + [...after].filter((x) => !before.includes(x)).length;
  return { sent: o.count, status5xx, accepted, stateChanged, examples };
}
