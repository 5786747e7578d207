/** The storage key layout (docs/architecture.md): one bucket, every part of the system agrees on these names. */

export const keys = {
  modelConfig: (modelHash: string) => `models/${modelHash}/config.json`,
  serverWeights: (modelHash: string) => `models/${modelHash}/server.safetensors`,
  devicePrefix: (modelHash: string, cut: number) => `models/${modelHash}/device/cut-${cut}.onnx`,
  /** Content-addressed by the table's own SHA-256: int8 and fp32 tables of one model differ. */
  tokenTable: (tableHash: string) => `models/token-tables/${tableHash}.safetensors`,
  /** A segment's weights as ONNX external data, content-addressed. */
  segmentWeights: (weightsHash: string) => `models/segment-weights/${weightsHash}.data`,
  /** A model's tokenizer.json for devices that do not hold it (Llama), content-addressed like token tables. */
  tokenizer: (tokenizerHash: string) => `models/tokenizers/${tokenizerHash}.json`,
  run: (runId: string) => `runs/${runId}/run.json`,
  plan: (runId: string, round: number) => `runs/${runId}/rounds/${round}/plan.json`,
  activations: (runId: string, deviceId: string, round: number) => `runs/${runId}/activations/${deviceId}/${round}/`,
  activationBatch: (runId: string, deviceId: string, round: number, batch: number) =>
    `runs/${runId}/activations/${deviceId}/${round}/${String(batch).padStart(6, '0')}.safetensors`,
  activationManifest: (runId: string, deviceId: string, round: number) => `runs/${runId}/activations/${deviceId}/${round}/_complete.json`,
  /** The trainer's state as training goes, alternating between two slots (gpu-server/runs/checkpoint.ts). */
  checkpoint: (runId: string, slot: number) => `runs/${runId}/checkpoints/state-${slot}.safetensors`,
  /** The trainer's state before a device's first batch of a round, for the loss-rise rollback (gpu-server/rounds/guard.ts). */
  guardMark: (runId: string, deviceId: string) => `runs/${runId}/checkpoints/guard-mark-${deviceId}.safetensors`,
  roundDone: (runId: string, round: number) => `runs/${runId}/rounds/${round}/done.json`,
  adapter: (runId: string, round: number, file: string) => `runs/${runId}/adapters/${round}/${file}`,
  runs: () => 'runs/',
  /** A deleted run's tombstone: what is left to sweep once its devices stop uploading (gpu-server/runs/delete.ts). */
  deletedRun: (runId: string) => `deleted-runs/${runId}.json`,
  deletedRuns: () => 'deleted-runs/',
  metrics: (runId: string) => `runs/${runId}/metrics.jsonl`,
};

/** Ids that become key segments: letters, digits, '-', '_' and '.', so no id can reach into another's prefix. */
const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function checkId(kind: string, id: string): string {
  if (!ID.test(id) || id.includes('..')) {
    throw new Error(`${kind} '${id}' is not a valid id: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
  return id;
}
