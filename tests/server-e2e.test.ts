/**
 * The training server end to end at small size: real device workers under workerd, the real S3 server, and the
 * server driven over HTTP as an operator would.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { GPT2Tokenizer } from '../core/tokenizer/gpt2.ts';
import { referenceClassify } from '../core/model/gpt2/reference.ts';
import { maxAbsDiff } from './fixtures.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, parseAdapter } from '../core/peft/adapter.ts';
import { keys } from '../core/storage/keys.ts';
import { S3Store } from '../core/storage/s3.ts';
import { getJson } from '../core/storage/json.ts';
import { ApiError, ServerClient } from '../gpu-server/api/client.ts';
import { asGpt2 } from '../core/model/family.ts';
import { readModelFolder } from '../gpu-server/model-folder/folder.ts';
import type { RoundPlan } from '../gpu-server/runs/plan.ts';
import { createApp } from '../gpu-server/api/app.ts';
import { RunRegistry } from '../gpu-server/runs/registry.ts';
import { startServer, type RunningServer } from '../gpu-server/server.ts';
import { scoreLogits } from '../gpu-server/train/score.ts';
import { Trainer } from '../gpu-server/train/trainer.ts';
import { startSystem, type TestSystem } from './system.ts';
import type { DevicePolicy } from '../core/wire/policy.ts';

let sys: TestSystem;
let server: RunningServer;
let client: ServerClient;
const logs: string[] = [];

beforeAll(async () => {
  sys = await startSystem('test-e2e');
  server = await startServer({
    host: '127.0.0.1',
    port: 0,
    operatorToken: 'op-token',
    roundSecret: sys.stack.roundSecret,
    s3: sys.stack.s3.config,
    backend: 'wasm',
    log: (m) => logs.push(m),
  });
  client = new ServerClient(server.url, 'op-token');
});
afterAll(async () => {
  await server?.close();
  await sys?.close();
});

const status = (p: Promise<unknown>) =>
  p.then(
    () => 200,
    (e: ApiError) => e.status,
  );
const message = (p: Promise<unknown>) =>
  p.then(
    () => '',
    (e: ApiError) => e.message,
  );

describe('training server over HTTP', () => {
  it('refuses a missing (401) or wrong (403) operator token', async () => {
    expect((await fetch(new URL('/runs', server.url))).status).toBe(401);
    expect(await status(new ServerClient(server.url, 'nope').runs())).toBe(403);
    // Started from code with an empty token, the server would let in "Authorization: Bearer " with nothing after it.
    expect(() => createApp(server.runs, '')).toThrow('the operator token is empty');
  });

  it('refuses bad run specs with 400 naming the field, and unknown runs and devices with 404', async () => {
    expect(await message(client.createRun(sys.spec({ lora: { rank: 0 } })))).toMatch(/HTTP 400: field 'lora.rank': must be a positive integer, got 0/);
    expect(await message(client.createRun(sys.spec({ model: join(sys.dir, 'nowhere') })))).toMatch(/HTTP 400: .*\/nowhere\/config.json: not found/);
    // Files outside the server's data folders are refused without a word on whether they exist.
    for (const model of ['/etc', '/nowhere/gpt2', '../../etc'])
      expect(await message(client.createRun(sys.spec({ model })))).toMatch(
        new RegExp(`HTTP 400: model ${model} is outside the server's data folders \\(.*\\): put it there, or set SPLITFROZEN_DATA_DIRS`),
      );
    const evalOutside = sys.spec({ task: { labels: ['0', '1'], eval: { path: '/etc/passwd', format: 'tsv' } } });
    expect(await message(client.createRun(evalOutside))).toMatch(/HTTP 400: task.eval.path \/etc\/passwd is outside the server's data folders/);
    expect(await message(client.createRun(sys.spec({ ordering: { kind: 'fixed', order: ['device-1', 'ghost'] } })))).toMatch(
      /HTTP 400: field 'ordering.order': unknown device 'ghost'/,
    );
    expect(await message(client.createRun({ ...sys.spec(), devices: [{ id: 'd', url: 'ftp://x' }] }))).toMatch(
      /field 'devices\[0\].url': must be the device worker's http\(s\) URL/,
    );
    // A cut the owner never approved fails at creation, naming what the owner approved (it failed at the first round).
    const d2 = sys.stack.devices[1]!;
    const owner = { authorization: `Bearer ${d2.ownerToken}` };
    const policy = (await (await fetch(new URL('/approvals', d2.url), { headers: owner })).json()) as DevicePolicy;
    const atCut2 = policy.approvals.find((a) => a.cut === 2)!;
    expect((await fetch(new URL(`/approvals/${atCut2.sha256}`, d2.url), { method: 'DELETE', headers: owner })).status).toBe(204);
    try {
      expect(await message(client.createRun(sys.spec()))).toMatch(
        /HTTP 400: device device-2: cut 2 is not approved \(its owner approved cut 1\); pin an approved cut/,
      );
    } finally {
      await d2.approve(atCut2);
    }
    expect(await status(client.run('no-such-run'))).toBe(404);
    const record = await client.createRun({ ...sys.spec(), id: 'run-404' });
    expect(
      await message(
        fetch(new URL(`/runs/${record.id}/devices/ghost`, server.url), { headers: { authorization: 'Bearer op-token' } }).then(async (r) => {
          throw new ApiError(r.status, `${r.status} ${(await r.json()).error}`);
        }),
      ),
    ).toBe("404 run run-404 has no device 'ghost'; its devices are device-1, device-2");
    expect(await status(client.adapterFile(record.id, 0, ADAPTER_WEIGHTS))).toBe(404);
  });

  it('runs rounds: devices at their own cuts, the pipeline, metrics, the activation cache, and an adapter that reproduces the evaluation', async () => {
    const record = await client.createRun({ ...sys.spec(), id: 'run-main' });
    expect(record.cuts['device-1'].cut).toBe(1);
    expect(record.deepestCut).toBe(2);
    expect(await client.trigger(record.id)).toBe(0);
    expect(await status(client.trigger(record.id))).toBe(409); // one round at a time
    const after0 = await client.waitIdle(record.id, undefined, 100);
    expect(after0.progress?.phase, after0.progress?.error).toBe('done');
    const m0 = after0.metrics[0];
    expect(m0.steps).toBe(2 * Math.ceil(48 / 8));
    expect(m0.devices.map((d) => [d.id, d.cut, d.batches, d.reused])).toEqual(
      expect.arrayContaining([
        ['device-1', 1, 6, false],
        ['device-2', 2, 6, false],
      ]),
    );
    // A count of right answers over the held-out rows; round 1's is recomputed independently below.
    expect(m0.evalRows).toBe(sys.evalRows.length);
    expect(Number.isInteger(Math.round(m0.evalAccuracy! * m0.evalRows * 1e6) / 1e6)).toBe(true);
    expect(m0.bytesMoved).toBeGreaterThan(0);

    const store = new S3Store(sys.stack.s3.config);
    const plan = (await getJson<RoundPlan>(store, keys.plan(record.id, 0)))!;
    expect([...plan.order].sort()).toEqual(['device-1', 'device-2']);

    // Round 1: the shards, segments and tokenization are unchanged, so the devices are not asked again.
    await client.trigger(record.id);
    const after1 = await client.waitIdle(record.id, undefined, 100);
    const m1 = after1.metrics[1];
    expect(m1.devices.every((d) => d.reused)).toBe(true);
    expect(m1.devices.every((d) => d.forwardMs === undefined)).toBe(true);
    expect((await client.round(record.id, 1)).plan.devices['device-1'].sourceRound).toBe(0);
    expect(m1.trainLoss).toBeLessThan(m0.trainLoss);

    // The pulled adapter, loaded into the TypeScript model, gives exactly the server's evaluation.
    const files = {
      [ADAPTER_CONFIG]: await client.adapterFile(record.id, 'latest', ADAPTER_CONFIG),
      [ADAPTER_WEIGHTS]: await client.adapterFile(record.id, 1, ADAPTER_WEIGHTS),
    };
    const model = asGpt2(await readModelFolder(sys.modelDir), 'the test');
    const adapter = parseAdapter(files, model.config);
    const t = new Trainer(
      model,
      { lora: { rank: 4, alpha: 8, dropout: 0, targets: ['attn.c_attn'] }, optimizer: {}, schedule: { lr: 0, warmupSteps: 0, kind: 'constant' }, seed: 42 },
      2,
    );
    t.loadAdapter(adapter);
    // Evaluated in the server's batches of 8, since padding length follows each batch.
    const logits = new Float32Array(sys.evalRows.length * 2);
    for (let i = 0; i < sys.evalRows.length; i += 8) {
      const e = new GPT2Tokenizer().encodeBatch(
        sys.evalRows.slice(i, i + 8).map((r) => r.text),
        { maxLength: 24, padTokenId: model.config.padTokenId },
      );
      logits.set(await t.predictTokens(e.ids, e.attentionMask, e.rows, e.seqLen), i * 2);
    }
    const mine = scoreLogits(
      logits,
      sys.evalRows.map((r) => Number(r.label)),
      2,
    );
    expect(mine.accuracy).toBe(m1.evalAccuracy);
    expect(mine.loss).toBeCloseTo(m1.evalLoss!, 6);
    t.dispose();

    // watch in a log (not a terminal): a line per change, then the table; the round is over, so one line.
    const env = { ...process.env, SPLITFROZEN_URL: server.url, SPLITFROZEN_OPERATOR_TOKEN: 'op-token' };
    const watched = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'scripts/splitfrozen.ts', 'watch', '--run', record.id], { env });
    expect(watched.stderr).toMatch(/^round 1: done \d+\/\d+ batches loss \d+\.\d{4}\n$/);
    expect(watched.stdout.split('\n').filter((l) => /^\| \d+ \|/.test(l))).toHaveLength(2);
    // pull --merged without its base model is refused before anything is written (exit 2, the usage error's code).
    const refused = join(sys.dir, 'not-pulled');
    await expect(
      promisify(execFile)(process.execPath, ['--import', 'tsx', 'scripts/splitfrozen.ts', 'pull', '--run', record.id, '--out', refused, '--merged'], { env }),
    ).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('--merged needs --model DIR') });
    await expect(readFile(join(refused, ADAPTER_WEIGHTS))).rejects.toThrow(/ENOENT/);
    // The server's refusal exits 1.
    await expect(
      promisify(execFile)(process.execPath, ['--import', 'tsx', 'scripts/splitfrozen.ts', 'metrics', '--run', 'no-such-run'], { env }),
    ).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining('404') });

    // The CLI pulls the same adapter, and merged full weights that predict what the adapter does.
    const out = join(sys.dir, 'pulled');
    await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', 'scripts/splitfrozen.ts', 'pull', '--run', record.id, '--out', out, '--merged', '--model', sys.modelDir],
      {
        env: { ...process.env, SPLITFROZEN_URL: server.url, SPLITFROZEN_OPERATOR_TOKEN: 'op-token' },
      },
    );
    expect(new Uint8Array(await readFile(join(out, ADAPTER_WEIGHTS)))).toEqual(files[ADAPTER_WEIGHTS]);
    const merged = asGpt2(await readModelFolder(join(out, 'merged')), 'the test');
    const e = new GPT2Tokenizer().encodeBatch(
      sys.evalRows.slice(0, 8).map((r) => r.text),
      { maxLength: 24, padTokenId: model.config.padTokenId },
    );
    const viaMerged = referenceClassify(merged, e.ids, e.attentionMask, e.rows, e.seqLen);
    expect(maxAbsDiff(viaMerged, logits.subarray(0, 16))).toBeLessThan(1e-4);
  });

  it('answers a storage outage with 503 and an internal error with 500, keeping the reasons in its log', async () => {
    const log: string[] = [];
    // Real S3 client, nothing listening where it points.
    const runs = new RunRegistry({ store: new S3Store({ ...sys.stack.s3.config, endpoint: 'http://127.0.0.1:9' }), roundSecret: 'x', log: () => {} });
    const app = createApp(runs, 'op-token', (m) => log.push(m));
    const res = await app.request('/runs', {
      method: 'POST',
      headers: { authorization: 'Bearer op-token', 'content-type': 'application/json' },
      body: JSON.stringify(sys.spec()),
    });
    expect([res.status, await res.json()]).toEqual([503, { error: 'storage unavailable; try again' }]);
    // The first call to storage: whether the id is a deleted run's, still being swept.
    expect(log.join('\n')).toMatch(/storage get 'deleted-runs\/run-.*\.json' failed/);
  });

  it('the CLI says what is missing', async () => {
    const run = promisify(execFile)(process.execPath, ['--import', 'tsx', 'scripts/splitfrozen.ts', 'trigger'], {
      env: { ...process.env, SPLITFROZEN_URL: server.url, SPLITFROZEN_OPERATOR_TOKEN: 'op-token' },
    });
    await expect(run).rejects.toMatchObject({ stderr: expect.stringContaining("--run is required for 'trigger'") });
    const noToken = promisify(execFile)(process.execPath, ['--import', 'tsx', 'scripts/splitfrozen.ts', 'runs'], {
      env: { ...process.env, SPLITFROZEN_OPERATOR_TOKEN: '' },
    });
    await expect(noToken).rejects.toMatchObject({ stderr: expect.stringContaining('SPLITFROZEN_OPERATOR_TOKEN is not set') });
  });

  it('the server refuses a backend or a setting it does not know, naming it and what would do', async () => {
    const env = {
      ...process.env,
      SPLITFROZEN_OPERATOR_TOKEN: 'x',
      SPLITFROZEN_ROUND_SECRET: 'y',
      SPLITFROZEN_S3_BUCKET: 'b',
      SPLITFROZEN_S3_ACCESS_KEY_ID: 'a',
      SPLITFROZEN_S3_SECRET_ACCESS_KEY: 's',
    };
    const start = (...args: string[]) => promisify(execFile)(process.execPath, ['--import', 'tsx', 'gpu-server/main.ts', ...args], { env });
    await expect(start('--backend', 'gpu')).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining('SPLITFROZEN_BACKEND (--backend) is "gpu": use auto, webgpu, tfjs-node-gpu, ort-webgpu, ort-cpu, tfjs-node, wasm, cpu'),
    });
    await expect(start('--checkpoint-seconds', 'often')).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining('SPLITFROZEN_CHECKPOINT_SECONDS (--checkpoint-seconds) is "often": set it to a number'),
    });
  });
});
