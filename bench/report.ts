/** What every benchmark prints: one JSON document on stdout, with the date and the machine it ran on. */
import { cpus } from 'node:os';

export function printReport(bench: string, body: Record<string, unknown>): void {
  // glibc's malloc settings change onnxruntime's CPU speed (gpu-server/backends/onnxruntime/native-memory.ts): said with every figure.
  const machine = { cpus: cpus().length, model: cpus()[0]?.model, node: process.version, glibcTunables: process.env.GLIBC_TUNABLES ?? null };
  console.log(JSON.stringify({ bench, date: new Date().toISOString(), machine, ...body }, null, 2));
}
