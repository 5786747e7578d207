/**
 * npm run drill — the system's promises under attack and faults, on the real local stack (workerd devices, the S3
 * server behind a fault proxy, the training server as its own process), printed as one JSON object:
 * forged requests, fuzzed malformed requests, server kills with storage faults during a 3-round GraB run, a scan of
 * storage for shard text, the privacy section (scripts/drill/privacy.ts): every attack, undefended and at the
 * devices' default defence, and that defence's cost in accuracy, and lying devices beside honest ones
 * (scripts/drill/malicious.ts). --only privacy or --only malicious runs that section alone.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { syntheticSentiment } from '../core/data/synthetic.ts';
import { gpt2Config } from '../core/model/gpt2/config.ts';
import { initModel } from '../core/model/gpt2/init.ts';
import { deviceSegment } from '../core/onnx/segment.ts';
import { S3Store } from '../core/storage/s3.ts';
import { writeModelFolder } from '../gpu-server/model-folder/folder.ts';
import { buildRoundRequest } from '../gpu-server/rounds/request.ts';
import { localTempDir } from '../infra/local/paths.ts';
import { startServerProcess } from '../infra/local/server-process.ts';
import { startStack } from '../infra/local/stack.ts';
import { cliArgs, int, run } from '../infra/cli.ts';
import { ServerClient } from '../gpu-server/api/client.ts';
import { concurrentDrill } from './drill/concurrent.ts';
import { deviceKillDrill } from './drill/device-kills.ts';
import { forgedRequests } from './drill/forged.ts';
import { fuzzRequests } from './drill/fuzz.ts';
import { killDrill } from './drill/kills.ts';
import { scanForText } from './drill/scan.ts';
import { privacyDrill } from './drill/privacy.ts';
import { maliciousDrill } from './drill/malicious.ts';

const USAGE =
  'usage: npm run drill -- [--only privacy|malicious] [--kills 20] [--device-kills 3] [--concurrent 32] [--fuzz 240] [--fault-rate 0.15] [--seed 0] [--out docs/drills/drill-DATE.json]';
const args = cliArgs(USAGE, {
  kills: { type: 'string' },
  'device-kills': { type: 'string' },
  concurrent: { type: 'string' },
  fuzz: { type: 'string' },
  'fault-rate': { type: 'string' },
  seed: { type: 'string' },
  out: { type: 'string' },
  only: { type: 'string' },
});
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
process.env.WRANGLER_LOG ??= 'warn';

const log = (m: string) => console.error(`[drill] ${m}`);

/** The drill's JSON, printed and written to --out (default docs/drills/drill-DATE[-SECTION].json). */
async function report(result: { date: string } & Record<string, unknown>, section?: string): Promise<void> {
  const out = args.out ?? join('docs', 'drills', `drill-${result.date}${section ? `-${section}` : ''}.json`);
  await mkdir(join(out, '..'), { recursive: true });
  await writeFile(out, JSON.stringify(result, null, 2) + '\n');
  console.log(JSON.stringify(result));
  log(`written to ${out}`);
}

run(async () => {
  const seed = int('seed', args.seed, 0);
  const started = performance.now();
  if (args.only !== undefined && args.only !== 'privacy' && args.only !== 'malicious')
    throw new Error(`--only: '${args.only}' is not a section that runs alone (privacy, malicious)\n${USAGE}`);
  if (args.only === 'privacy') {
    log('privacy: every attack, undefended and at the default defence, and its cost in accuracy');
    const privacy = await privacyDrill({ log });
    return report({ date: new Date().toISOString().slice(0, 10), privacy, wallSeconds: Math.round((performance.now() - started) / 1000) }, 'privacy');
  }
  if (args.only === 'malicious') {
    const maliciousDevices = await maliciousDrill({ log });
    return report(
      { date: new Date().toISOString().slice(0, 10), maliciousDevices, wallSeconds: Math.round((performance.now() - started) / 1000) },
      'malicious',
    );
  }
  const dir = await localTempDir('drill');
  log('starting the local stack: S3 server behind a fault proxy, 3 device workers');
  const stack = await startStack({ dir: join(dir, 'stack'), devices: 3, faultProxy: true, deviceVars: { PIECE_BATCHES: '4' } });
  try {
    const model = initModel(gpt2Config({ nLayer: 5, nEmbd: 32, nHead: 4, nPositions: 32 }), { seed: 0 });
    const modelDir = join(dir, 'model');
    await writeModelFolder(modelDir, model);
    const cuts = [2, 3, 4];
    await stack.approveSegments(model, 'drill-model', cuts);
    const labels = ['0', '1'];
    const rowsPerDevice = 160;
    const rows = syntheticSentiment(3 * rowsPerDevice + 48, 11 + seed);
    const evalRows = rows.slice(0, 48);
    const shardTexts: string[] = [];
    for (const [i, d] of stack.devices.entries()) {
      const shard = rows.slice(48 + i * rowsPerDevice, 48 + (i + 1) * rowsPerDevice);
      shardTexts.push(...shard.map((r) => r.text));
      await d.uploadShard('private', shard, labels);
    }
    const spec = (id: string) => ({
      id,
      model: modelDir,
      task: { labels, evalRows },
      devices: stack.devices.map((d, i) => ({ id: d.id, url: d.url.href, cut: cuts[i] })),
      ordering: { kind: 'grab' },
      lora: { rank: 4, alpha: 8, dropout: 0.1, targets: ['attn.c_attn'] },
      optimizer: { lr: 0.01, warmupSteps: 2, schedule: 'linear' },
      training: { batchSize: 8, seqLen: 24, dtype: 'fp32', seed: 3, rounds: 3 },
    });

    log('server kills and storage faults during a 3-round GraB run');
    const kills = await killDrill({
      storage: stack.storage,
      proxy: stack.proxy!,
      roundSecret: stack.roundSecret,
      spec,
      rounds: 3,
      kills: int('kills', args.kills, 20),
      faultRate: Number(args['fault-rate'] ?? 0.15),
      seed,
      log,
    });

    const store = new S3Store(stack.s3.config);
    const operatorToken = 'drill-operator-token';
    const server = await startServerProcess({ s3: stack.storage, roundSecret: stack.roundSecret, operatorToken, env: { SPLITFROZEN_BACKEND: 'wasm' } });
    try {
      const segment = await deviceSegment(model, cuts[0], 'fp32');
      const valid = await buildRoundRequest(new S3Store(stack.storage), {
        runId: 'drill-valid',
        round: 0,
        deviceId: stack.devices[0].id,
        modelSha256: segment.sha256,
        cut: cuts[0],
        rows: rowsPerDevice,
        batchSize: 8,
        seqLen: 24,
        dtype: 'fp32',
        labels,
        padTokenId: model.config.padTokenId,
      });

      log('forged requests');
      const forged = await forgedRequests({
        device: stack.devices[0],
        other: stack.devices[1],
        masterSecret: stack.roundSecret,
        valid,
        serverUrl: server.url,
        repeat: 5,
      });

      log('fuzzed malformed requests');
      const owner = (d: (typeof stack.devices)[number]) => ({ authorization: `Bearer ${d.ownerToken}` });
      const snapshot = async () => {
        const runs = (await (await fetch(new URL('/runs', server.url), { headers: { authorization: `Bearer ${operatorToken}` } })).json()).runs.map(
          (r: { id: string }) => `run ${r.id}`,
        );
        const d = stack.devices[0];
        const shards = (await (await fetch(new URL('/shards', d.url), { headers: owner(d) })).json()).shards.map(
          (s: { name: string; etag: string }) => `shard ${s.name} ${s.etag}`,
        );
        const policy = `policy ${JSON.stringify(await (await fetch(new URL('/approvals', d.url), { headers: owner(d) })).json())}`;
        const objects: string[] = [];
        for await (const o of store.list('')) objects.push(`object ${o.key} ${o.size}`);
        return [...runs, ...shards, policy, ...objects];
      };
      const fuzz = await fuzzRequests({
        serverUrl: server.url,
        operatorToken,
        validSpec: JSON.parse(JSON.stringify(spec('fuzz'))),
        device: stack.devices[0],
        masterSecret: stack.roundSecret,
        validRound: valid,
        count: int('fuzz', args.fuzz, 240),
        seed,
        snapshot,
      });

      log('device kills');
      const deviceKills = await deviceKillDrill({
        server: new ServerClient(server.url, operatorToken),
        devices: stack.devices,
        masterSecret: stack.roundSecret,
        spec,
        kills: int('device-kills', args['device-kills'], 3),
        log,
      });

      log('scanning storage for shard text');
      const scan = await scanForText(
        store,
        shardTexts,
        evalRows.map((r) => r.text),
      );

      log('privacy: every attack, undefended and at the default defence, and its cost in accuracy');
      const privacy = await privacyDrill({ log });

      log('devices uploading at once');
      const crowd = await concurrentDrill({
        storage: stack.s3.config,
        masterSecret: stack.roundSecret,
        model,
        rows: rows.slice(48, 72).map((r) => ({ text: r.text, label: r.label })),
        count: int('concurrent', args.concurrent, 32),
        dir: join(dir, 'crowd'),
        log,
      });

      log('lying devices beside honest ones');
      const maliciousDevices = await maliciousDrill({ log });

      const result = {
        date: new Date().toISOString().slice(0, 10),
        seed,
        serverKills: kills.serverKills,
        adapterBitEqual: kills.adapterBitEqual,
        storageFaults: kills.storageFaults,
        batchesLost: kills.batchesLost,
        batchesTrainedTwice: kills.batchesTrainedTwice,
        killRun: { roundsCompleted: kills.roundsCompleted, restarts: kills.restarts, killPoints: kills.killPoints, wallSeconds: kills.wallSeconds },
        deviceKills: deviceKills.deviceKills,
        roundsCompleted: deviceKills.roundsCompleted,
        deviceBatchesLost: deviceKills.batchesLost,
        devicesConcurrent: crowd.devicesConcurrent,
        objectsLost: crowd.objectsLost,
        concurrentRun: { objectsExpected: crowd.objectsExpected, wallSeconds: crowd.wallSeconds },
        malformedRequests: fuzz.sent,
        status5xx: fuzz.status5xx,
        malformedAccepted: fuzz.accepted,
        stateChanged: fuzz.stateChanged,
        malformedExamples: fuzz.examples,
        forgedRequests: forged.sent,
        accepted: forged.accepted,
        forgedByKind: Object.fromEntries(Object.entries(forged.byKind).map(([k, v]) => [k, [...new Set(v)].join('/')])),
        rawTextFound: scan.found.length,
        rawTextScan: { objects: scan.objects, bytes: scan.bytes, windows: scan.windows, found: scan.found.slice(0, 5) },
        privacy,
        maliciousDevices,
        wallSeconds: Math.round((performance.now() - started) / 1000),
      };
      await report(result);
    } finally {
      await server.stop();
    }
  } finally {
    await stack.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
