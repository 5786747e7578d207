/**
 * What a round's status tells the server of a failure. Messages the device writes itself (RoundError) name what
 * failed and which batch, shard or field, never data. Any other message (onnxruntime, a parser, the tokenizer, the
 * token table) may quote token ids or shard text: the server learns only which step failed, the device's own log
 * (wrangler tail, its owner's) keeps the whole error.
 */
export class RoundError extends Error {}

/** A failure as the server may read it; one the device did not word itself goes whole to the device's log. */
export function reportable(e: unknown): string {
  if (e instanceof RoundError) return e.message;
  console.error('the round failed:', e);
  return `the round failed (${errorName(e)}); the device's log has why`;
}

/** Runs `f` as the step `what`: a failure the device did not word itself is rethrown as one naming the step. */
export async function step<T>(what: string, f: () => T | Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof RoundError) throw e;
    console.error(`${what}:`, e);
    throw new RoundError(`${what} failed (${errorName(e)}); the device's log has why`);
  }
}

const errorName = (e: unknown) => (e instanceof Error ? e.name : typeof e);
