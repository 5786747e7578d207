/**
 * npm run bench:pipeline — the pipeline schedule measured apart from the core count: the real server (planner,
 * feed, trainer on the auto backend, checkpoints) trains one round of the same work pipelined (every device starts at
 * once; the server trains device i while the later ones compute) and stop-and-wait (the next device is asked only
 * after the server has trained the previous one). The devices are in-process stand-ins of a declared speed
 * (tests/support/round-world.ts: they sleep for their batch time instead of computing, so they take no core from
 * the server; device workers themselves are measured by bench:device and bench:worker). Each schedule's training
 * wall time beside the makespan the device-time model (experiments/device-time.ts) predicts from the measured step
 * time and the declared device speeds. JSON on stdout, progress on stderr.
 */
import { cliArgs, int } from '../infra/cli.ts';
import { roundMakespan } from '../experiments/device-time.ts';
import { world } from '../tests/support/round-world.ts';
import { RunRegistry } from '../gpu-server/runs/registry.ts';
import { parseRunSpec } from '../gpu-server/runs/spec.ts';
import type { RoundMetrics } from '../gpu-server/runs/types.ts';
import { initBackend } from '../gpu-server/backends/tfjs/runtime.ts';
import { printReport } from './report.ts';

const args = cliArgs('usage: npm run bench:pipeline -- [--batches 32] [--repeats 2]', { batches: { type: 'string' }, repeats: { type: 'string' } });
const log = (m: string) => process.stderr.write(`[bench:pipeline] ${m}\n`);
const BATCHES = int('batches', args.batches, 32);
const REPEATS = int('repeats', args.repeats, 2);
const [BATCH, SEQ] = [8, 64];
/** Each device's time per batch as a multiple of the server's step: faster than the server, as fast, and slower. */
const PACE = [0.5, 1, 2];
const shape = { layers: 4, embd: 384, heads: 6, positions: SEQ };

const backend = await initBackend('auto');
log(`server backend: ${backend.backend}`);
// Every device at the same cut, so that every batch costs the server the same step (the model's assumption).
const w = await world({ rows: BATCHES * BATCH, cuts: PACE.map(() => 2), shape });
try {
  const order = [...w.devices.keys()];
  const spec = parseRunSpec(
    w.spec({
      ordering: { kind: 'fixed', order },
      lora: { rank: 8, alpha: 16, dropout: 0, targets: ['attn.c_attn'] },
      training: { batchSize: BATCH, seqLen: SEQ, rounds: 1, seed: 0 },
    }),
  );
  const round = async (schedule: 'pipelined' | 'stop-and-wait', n: number): Promise<RoundMetrics> => {
    const runs = new RunRegistry({
      store: w.store,
      roundSecret: 'bench',
      log: () => {},
      pollMs: 5,
      dataDirs: [w.dir],
      device: (d) => w.devices.get(d.id)!,
      checkpointSeconds: 3600,
      blocks: backend.blocks,
      schedule,
    });
    const id = `${schedule}-${n}`;
    await runs.create(spec, id);
    await runs.trigger(id);
    await runs.idle(id);
    const m = (await runs.metrics(id))[0];
    if (!m) throw new Error(`${schedule} round failed: ${(await runs.view(id)).progress?.error}`);
    return m;
  };

  // Devices at full speed first: the server's step time, which the devices' declared speeds are set from.
  log(`warm-up: ${order.length} devices x ${BATCHES} batches of ${BATCH} x ${SEQ}, GPT-2 ${shape.layers} blocks of width ${shape.embd}, cut 2`);
  const warm = await round('pipelined', 0);
  const stepMs = warm.serverTrainMs / warm.steps;
  const deviceBatchMs = order.map((id, i) => (w.devices.get(id)!.batchDelayMs = Math.round(PACE[i]! * stepMs)));
  // What the device-time model takes of the devices: their declared speeds.
  const deviceWork = order.map((id, i) => ({ id, batches: BATCHES, secondsPerBatch: deviceBatchMs[i]! / 1000 }));
  log(`server step ${stepMs.toFixed(0)} ms; device batch times ${deviceBatchMs.map((ms) => `${ms} ms`).join(', ')}`);

  const measured: Record<string, Array<{ trainingWallMs: number; serverTrainMs: number; serverIdleMs: number; steps: number; predictedMs: number }>> = {
    pipelined: [],
    'stop-and-wait': [],
  };
  for (let n = 1; n <= REPEATS; n++) {
    for (const schedule of ['pipelined', 'stop-and-wait'] as const) {
      log(`${schedule} (${n}/${REPEATS})`);
      const m = await round(schedule, n);
      // The model takes this run's own step time: what it predicts is the schedule, not the step.
      const predicted = roundMakespan(deviceWork, m.serverTrainMs / m.steps / 1000, schedule);
      measured[schedule]!.push({
        trainingWallMs: m.serverTrainMs + m.serverIdleMs,
        serverTrainMs: m.serverTrainMs,
        serverIdleMs: m.serverIdleMs,
        steps: m.steps,
        predictedMs: Math.round(predicted.seconds * 1000),
      });
    }
  }
  const summary = (schedule: string) => {
    const runs = measured[schedule]!;
    const best = runs.reduce((a, r) => (r.trainingWallMs < a.trainingWallMs ? r : a));
    return {
      ...best,
      idleFraction: Number((best.serverIdleMs / best.trainingWallMs).toFixed(3)),
      measuredToPredicted: Number((best.trainingWallMs / best.predictedMs).toFixed(3)),
      runsMs: runs.map((r) => r.trainingWallMs),
    };
  };
  const [pipelined, stopAndWait] = [summary('pipelined'), summary('stop-and-wait')];
  const deviceMs = BATCHES * Math.max(...deviceBatchMs);
  printReport('pipeline', {
    work: {
      devices: order.length,
      batchesPerDevice: BATCHES,
      batch: BATCH,
      seq: SEQ,
      model: shape,
      cut: 2,
      backend: backend.backend,
      serverStepMs: Math.round(stepMs),
      deviceBatchMs: Object.fromEntries(order.map((id, i) => [id, deviceBatchMs[i]])),
      devicePaceToServerStep: PACE,
    },
    pipelined,
    'stop-and-wait': stopAndWait,
    ratioStopAndWaitToPipelined: {
      measured: Number((stopAndWait.trainingWallMs / pipelined.trainingWallMs).toFixed(3)),
      predicted: Number((stopAndWait.predictedMs / pipelined.predictedMs).toFixed(3)),
    },
    bounds: {
      serverTotalMs: pipelined.serverTrainMs,
      slowestDeviceMs: deviceMs,
      sumOfDevicesAndServerMs: pipelined.serverTrainMs + BATCHES * deviceBatchMs.reduce((a, ms) => a + ms, 0),
    },
    note: "devices are in-process stand-ins that sleep for their declared batch time (no core taken from the server); the model predicts from the run's own mean step time and the declared device times",
  });
} finally {
  await w.close();
}
