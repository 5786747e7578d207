/** A round driven over the server's HTTP API, as npm start and the end-to-end scripts show it: a progress bar, then a table row. */
import type { ServerClient, RunView } from '../gpu-server/api/client.ts';
import type { RoundMetrics } from '../gpu-server/runs/types.ts';

export const seconds = (ms: number | undefined) => (ms === undefined ? '-' : (ms / 1000).toFixed(1));

export function progressLine(view: RunView, rounds: number): string {
  const p = view.progress;
  if (!p) return '';
  const width = 30;
  const done = p.batchesTotal ? Math.round((width * p.batchesTrained) / p.batchesTotal) : 0;
  // Device after device one trains at a time; interleaved, all of them.
  const device = Object.entries(p.devices)
    .filter(([, d]) => d.state === 'training')
    .map(([id]) => id)
    .join(', ');
  return `round ${p.round + 1}/${rounds} [${'#'.repeat(done)}${'.'.repeat(width - done)}] ${p.batchesTrained}/${p.batchesTotal} batches ${p.phase}${device ? ` on ${device}` : ''}${p.lastLoss === undefined ? '' : ` loss ${p.lastLoss.toFixed(4)}`}`;
}

export function roundRow(m: RoundMetrics): string {
  const timed = m.devices.filter((d) => d.forwardMs !== undefined);
  const forward = timed.length ? timed.reduce((a, d) => a + d.forwardMs!, 0) : undefined;
  return `| ${m.round} | ${m.order.join(' > ')} | ${m.trainLoss.toFixed(4)} | ${m.evalLoss?.toFixed(4) ?? '-'} | ${m.evalAccuracy === undefined ? '-' : (m.evalAccuracy * 100).toFixed(1) + '%'} | ${seconds(forward)} | ${seconds(m.serverTrainMs)} | ${seconds(m.serverIdleMs)} | ${(m.bytesMoved / 2 ** 20).toFixed(2)} | ${m.devices.filter((d) => d.reused).length}/${m.devices.length} | ${seconds(m.wallMs)} |`;
}

/** The devices a round did not train on (skipped, failed, rolled back), each with why: an adapter they leave unchanged. */
export function untrained(m: RoundMetrics): string[] {
  return m.devices.filter((d) => d.state !== 'trained').map((d) => `      ${d.id}: ${d.state}${d.error ? ` (${d.error})` : ''}`);
}

export interface FollowOptions {
  /** More to show after the bar: the devices' own progress, memory. */
  extra?: () => string;
  /** Off a terminal, a line while training every this many batches (default 10)... */
  every?: number;
  /** ...and at least one this often, so a long phase still shows it is alive (default: only on a change). */
  heartbeatSeconds?: number;
}

/**
 * Triggers the run's next round and follows it to its end: the bar redrawn in place on a terminal, else a line when
 * it changes. Throws if the round failed.
 */
export async function followRound(
  client: ServerClient,
  runId: string,
  rounds: number,
  { extra, every = 10, heartbeatSeconds = Infinity }: FollowOptions = {},
): Promise<RunView> {
  const tty = process.stderr.isTTY;
  let lastLine = '';
  let lastPrinted = 0;
  await client.trigger(runId);
  const view = await client.waitIdle(runId, (v) => {
    const line = progressLine(v, rounds);
    const more = extra?.() ?? '';
    if (tty) return line && process.stderr.write(`\r\x1b[K${line}${more && ` ${more}`}`);
    const due = performance.now() - lastPrinted > heartbeatSeconds * 1000;
    if (!line || (line === lastLine && !due)) return;
    lastLine = line;
    if (due || v.progress?.phase !== 'training' || v.progress.batchesTrained % every === 0) {
      lastPrinted = performance.now();
      process.stderr.write(`${line}${more && ` ${more}`}\n`);
    }
  });
  if (tty) process.stderr.write('\r\x1b[K');
  if (view.progress?.phase === 'failed') throw new Error(`round ${view.progress.round} failed: ${view.progress.error}`);
  return view;
}
