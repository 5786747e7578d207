/**
 * Lying devices beside honest ones: one round with the honest workerd devices alone, then one with every lying
 * device of liars.ts beside them, each on a fresh server process; then a cancel while a device stalls. What the
 * server must show: it never crashes, no adapter value is non-finite, every honest batch is trained, its peak memory
 * stays near the honest round's, each liar is left out or its lies refused (with the reason), a cancel answers at
 * once, and no device's text forges a line of the server's log.
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { syntheticSentiment } from '../../core/data/synthetic.ts';
import { gpt2Config } from '../../core/model/gpt2/config.ts';
import { initModel } from '../../core/model/gpt2/init.ts';
import { deviceSegment } from '../../core/onnx/segment.ts';
import { ADAPTER_WEIGHTS } from '../../core/peft/adapter.ts';
import { parseSafetensors } from '../../core/tensors/safetensors.ts';
import { ServerClient } from '../../gpu-server/api/client.ts';
import { writeModelFolder } from '../../gpu-server/model-folder/folder.ts';
import type { RunView } from '../../gpu-server/runs/registry.ts';
import { localTempDir } from '../../infra/local/paths.ts';
import { startServerProcess } from '../../infra/local/server-process.ts';
import { startStack, type RunningStack } from '../../infra/local/stack.ts';
import { LIAR_CASES, startLiar, type RunningLiar } from './liars.ts';

/** The run's deadlines in the drill: short, so that the stalling devices cost the round seconds, not minutes. */
const LIMITS = { callSeconds: 5, uploadSeconds: 15 };
const FORGED_LINE = /^\[server\] run drill: round 0: trained 99 batches/;

export interface MaliciousResult {
  cases: number;
  serverCrashes: number;
  nonFiniteAdapters: number;
  honestBatchesLost: number;
  rssRatioToHonest: number;
  peakRssMB: { honest: number; malicious: number };
  /** How long a cancel took to answer while a device stalled. */
  cancelMs: number;
  /**
   * The rounds' wall time, and what the liars that stall cost the round beyond the honest one: together at most the
   * run's limits.uploadSeconds (their deadlines run from when each was asked, all at the round's start), not each in turn.
   */
  roundSeconds: { honest: number; malicious: number; stallers: number; uploadSeconds: number };
  /** Lines of the server's log that a device's text began. */
  forgedLogLines: number;
  /** Each lying device: how the round ended for it, and why. */
  outcomes: Record<string, string>;
  wallSeconds: number;
}

interface RoundResult {
  view: RunView;
  crashed: boolean;
  nonFinite: number;
  peakRssMB: number;
  forgedLines: number;
}

export async function maliciousDrill({ log }: { log: (m: string) => void }): Promise<MaliciousResult> {
  const started = performance.now();
  const dir = await localTempDir('drill-malicious');
  const stack = await startStack({ dir: join(dir, 'stack'), devices: 2 });
  const liars: RunningLiar[] = [];
  try {
    const model = initModel(gpt2Config({ nLayer: 5, nEmbd: 32, nHead: 4, nPositions: 32 }), { seed: 0 });
    const modelDir = join(dir, 'model');
    await writeModelFolder(modelDir, model);
    const cut = 2;
    await stack.approveSegments(model, 'drill-model', [cut]);
    const labels = ['0', '1'];
    const rows = syntheticSentiment(2 * 80 + 32, 5);
    for (const [i, d] of stack.devices.entries()) await d.uploadShard('private', rows.slice(32 + i * 80, 32 + (i + 1) * 80), labels);
    const segment = { sha256: (await deviceSegment(model, cut, 'fp32')).sha256, cut };
    for (const [i, c] of LIAR_CASES.entries())
      liars.push(await startLiar(`liar-${String(i + 1).padStart(2, '0')}`, c, { nEmbd: model.config.nEmbd, segment, lateMs: 4 * LIMITS.uploadSeconds * 1000 }));
    const honest = stack.devices.map((d) => ({ id: d.id, url: d.url.href, cut }));
    const spec = (id: string, devices: Array<{ id: string; url: string; cut: number }>, ordering: object = { kind: 'random-reshuffle' }) => ({
      id,
      model: modelDir,
      task: { labels, evalRows: rows.slice(0, 32) },
      devices,
      ordering,
      lora: { rank: 4, alpha: 8, dropout: 0, targets: ['attn.c_attn'] },
      optimizer: { lr: 0.01, schedule: 'constant' },
      training: { batchSize: 8, seqLen: 24, dtype: 'fp32', seed: 1, rounds: 1 },
      limits: LIMITS,
    });

    log('malicious devices: a round with the honest devices alone');
    const alone = await round(stack, 'drill-honest', (c) => c.createRun(spec('drill-honest', honest)), log);
    log(`malicious devices: a round with ${liars.length} lying devices beside them`);
    const withLiars = await round(
      stack,
      'drill-liars',
      (c) => c.createRun(spec('drill-liars', [...honest, ...liars.map((l) => ({ id: l.id, url: l.url, cut }))])),
      log,
    );

    log('malicious devices: a cancel while a device stalls');
    const staller = liars.find((l) => l.kind === 'stalls after accepting')!;
    let cancelMs = NaN;
    await round(
      stack,
      'drill-cancel',
      async (c) => {
        await c.createRun(spec('drill-cancel', [{ id: staller.id, url: staller.url, cut }, ...honest], { kind: 'fixed', order: [staller.id] }));
        await c.trigger('drill-cancel');
        await sleep(3000);
        const t0 = performance.now();
        await c.cancel('drill-cancel');
        cancelMs = Math.round(performance.now() - t0);
      },
      log,
    );

    const trained = (v: RunView, id: string) => v.metrics[0]?.devices.find((d) => d.id === id)?.batches ?? 0;
    const planned = 80 / 8;
    const outcomes = Object.fromEntries(
      liars.map((l) => {
        const d = withLiars.view.metrics[0]?.devices.find((x) => x.id === l.id);
        const what = !d ? 'absent' : `${d.state ?? '?'}: ${d.batches} trained, ${d.refused ?? 0} refused${d.error ? `; ${d.error.slice(0, 200)}` : ''}`;
        return [`${l.id} ${l.kind}`, what];
      }),
    );
    return {
      cases: liars.length,
      serverCrashes: [alone, withLiars].filter((r) => r.crashed).length,
      nonFiniteAdapters: [alone, withLiars].filter((r) => r.nonFinite > 0).length,
      honestBatchesLost: honest.reduce((a, d) => a + Math.max(0, planned - trained(withLiars.view, d.id)), 0),
      rssRatioToHonest: Number((withLiars.peakRssMB / alone.peakRssMB).toFixed(3)),
      peakRssMB: { honest: alone.peakRssMB, malicious: withLiars.peakRssMB },
      cancelMs,
      roundSeconds: {
        honest: seconds(alone.view),
        malicious: seconds(withLiars.view),
        stallers: LIAR_CASES.filter((c) => c.timing).length,
        uploadSeconds: LIMITS.uploadSeconds,
      },
      forgedLogLines: withLiars.forgedLines,
      outcomes,
      wallSeconds: Math.round((performance.now() - started) / 1000),
    };
  } finally {
    await Promise.all(liars.map((l) => l.stop()));
    await stack.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * One round of run `id` on a fresh server process over the stack's storage. `drive` creates the run (and may trigger
 * and cancel it); the round is then awaited, its adapter checked, the process's peak resident memory read and its
 * log scanned.
 */
async function round(stack: RunningStack, id: string, drive: (c: ServerClient) => Promise<unknown>, log: (m: string) => void): Promise<RoundResult> {
  const server = await startServerProcess({
    s3: stack.storage,
    roundSecret: stack.roundSecret,
    operatorToken: 'drill-op',
    env: { SPLITFROZEN_BACKEND: 'wasm' },
  });
  let forgedLines = 0;
  createInterface({ input: server.child.stdout! }).on('line', (line) => FORGED_LINE.test(line) && forgedLines++);
  const client = new ServerClient(server.url, 'drill-op');
  try {
    await drive(client);
    if ((await client.run(id)).progress === null) await client.trigger(id);
    const view = await client.waitIdle(id, undefined, 500);
    log(`  round ${view.progress?.phase}: ${view.progress?.batchesTrained} batches trained, ${view.progress?.rejected.length} objects refused`);
    const crashed =
      server.child.exitCode !== null ||
      !(await fetch(new URL('/health', server.url)).then(
        (r) => r.ok,
        () => false,
      ));
    const nonFinite = view.progress?.phase === 'done' ? countNonFinite(await client.adapterFile(id, 'latest', ADAPTER_WEIGHTS)) : 0;
    const status = await readFile(`/proc/${server.child.pid}/status`, 'utf8');
    const peakRssMB = Math.round(Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) / 1024);
    return { view, crashed, nonFinite, peakRssMB, forgedLines };
  } finally {
    await server.stop();
  }
}

/** A finished round's wall time, in seconds (one decimal). */
const seconds = (v: RunView) => Math.round((v.metrics[0]?.wallMs ?? NaN) / 100) / 10;

function countNonFinite(bytes: Uint8Array): number {
  let n = 0;
  for (const t of parseSafetensors(bytes, ADAPTER_WEIGHTS).tensors.values()) for (const x of t.data as Float32Array) if (!Number.isFinite(x)) n++;
  return n;
}
