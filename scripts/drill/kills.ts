/**
 * The server killed with SIGKILL at random points of a whole run, while a share of its storage calls fail (503s,
 * reset connections, bodies cut short): started again each time, and each failed round triggered again, the run
 * must end with exactly the adapter of an uninterrupted run, every batch trained once.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ADAPTER_WEIGHTS } from '../../core/peft/adapter.ts';
import { Random } from '../../core/random.ts';
import type { S3Config } from '../../core/storage/s3.ts';
import { ApiError, ServerClient } from '../../gpu-server/api/client.ts';
import type { RoundMetrics } from '../../gpu-server/runs/types.ts';
import type { FaultProxy } from '../../infra/local/fault-proxy.ts';
import { startServerProcess, type ServerProcess } from '../../infra/local/server-process.ts';

export interface KillResult {
  serverKills: number;
  restarts: number;
  storageFaults: number;
  roundsCompleted: number;
  adapterBitEqual: boolean;
  batchesLost: number;
  batchesTrainedTwice: number;
  /** Where each kill landed: "round N phase trained/total". */
  killPoints: string[];
  wallSeconds: number;
}

const TOKEN = 'drill-operator-token';

export async function killDrill(o: {
  storage: S3Config;
  proxy: FaultProxy;
  roundSecret: string;
  spec: (id: string) => Record<string, unknown>;
  rounds: number;
  kills: number;
  faultRate: number;
  seed: number;
  log: (m: string) => void;
}): Promise<KillResult> {
  const started = performance.now();
  const rng = new Random(o.seed);
  let server: ServerProcess | undefined;
  let restarts = -1;
  const start = async (): Promise<ServerClient> => {
    for (;;) {
      try {
        server = await startServerProcess({ s3: o.storage, roundSecret: o.roundSecret, operatorToken: TOKEN, env: { SPLITFROZEN_BACKEND: 'wasm' } });
        restarts++;
        return new ServerClient(server.url, TOKEN);
      } catch (e) {
        o.log(`server did not start (${(e as Error).message}); again`); // its storage calls at start can fail too
      }
    }
  };
  /** Calls the API until it answers: a call may meet a failing storage call, or a server being killed. */
  const retry = async <T>(fn: () => Promise<T>): Promise<T> => {
    for (let i = 0; ; i++) {
      try {
        return await fn();
      } catch (e) {
        if (e instanceof ApiError && e.status === 409) throw e;
        if (i > 50) throw e;
        await sleep(200);
      }
    }
  };
  try {
    // The reference: no faults, no kills.
    let client = await start();
    await retry(() => client.createRun({ ...o.spec('reference') }));
    for (let r = 0; r < o.rounds; r++) {
      await retry(() => client.trigger('reference'));
      const view = await client.waitIdle('reference', undefined, 100);
      if (view.progress?.phase !== 'done') throw new Error(`the reference run failed round ${r}: ${view.progress?.error}`);
    }
    const reference = await client.metrics('reference');
    const referenceAdapter = await client.adapterFile('reference', o.rounds - 1, ADAPTER_WEIGHTS);
    o.log(`reference run: ${o.rounds} rounds, ${reference.map((m) => m.steps).join('/')} steps`);

    // The drilled run.
    const faultsBefore = o.proxy.failed.length;
    o.proxy.chaos(o.faultRate, o.seed);
    await retry(() => client.createRun({ ...o.spec('drilled') }));
    // Kill points: random moments of the whole run, as batches trained so far over its rounds (a kill lands when
    // training reaches one), so every round and every phase can be hit, and each life makes some progress.
    const perRound = reference[0].steps;
    const targets = Array.from({ length: o.kills }, () => Math.floor(rng.uniform() * o.rounds * perRound)).sort((a, b) => a - b);
    let kills = 0;
    const killPoints: string[] = [];
    for (let loops = 0; ; loops++) {
      if (loops > 100_000) throw new Error('the drilled run makes no progress');
      const view = await retry(() => client.run('drilled'));
      const p = view.progress;
      const trained = view.metrics.length * perRound + (view.running && p ? p.batchesTrained : 0);
      if (kills < o.kills && trained >= targets[kills]) {
        await sleep(rng.uniform() * 300); // off the poll's beat: some kills land in checkpoints, outputs, planning
        await server!.kill();
        kills++;
        killPoints.push(p ? `round ${p.round} ${p.phase} ${p.batchesTrained}/${p.batchesTotal}` : 'idle');
        o.log(`kill ${kills}/${o.kills}: ${killPoints.at(-1)}`);
        client = await start();
        continue;
      }
      if (!view.running) {
        if (view.metrics.length >= o.rounds) break;
        await retry(() => client.trigger('drilled')).catch((e) => {
          if (!(e instanceof ApiError && e.status === 409)) throw e;
        });
      }
      await sleep(50);
    }
    o.proxy.chaos(0);
    const drilled = await client.metrics('drilled');
    const adapter = await client.adapterFile('drilled', o.rounds - 1, ADAPTER_WEIGHTS);
    const steps = (ms: RoundMetrics[], r: number) => ms.find((m) => m.round === r)?.steps ?? 0;
    let lost = 0;
    let twice = 0;
    for (let r = 0; r < o.rounds; r++) {
      const d = steps(drilled, r) - steps(reference, r);
      if (d < 0) lost -= d;
      else twice += d;
      lost += drilled.find((m) => m.round === r)?.rejected ?? 0;
    }
    return {
      serverKills: kills,
      restarts,
      storageFaults: o.proxy.failed.length - faultsBefore,
      roundsCompleted: drilled.length,
      adapterBitEqual: Buffer.from(adapter).equals(Buffer.from(referenceAdapter)),
      batchesLost: lost,
      batchesTrainedTwice: twice,
      killPoints,
      wallSeconds: Math.round((performance.now() - started) / 1000),
    };
  } finally {
    o.proxy.chaos(0);
    await server?.stop();
  }
}
