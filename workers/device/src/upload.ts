/** PUT through a presigned URL, retried with exponential backoff; every failed attempt is reported. */
import { withRetries } from '../../../core/retry.ts';
import { RoundError } from './errors.ts';
import { storageFetch, StorageRefused } from './storage.ts';

export async function putWithRetry(
  field: string,
  url: string,
  body: Uint8Array | string,
  {
    origins,
    attempts,
    backoffMs,
    onFailure,
  }: { origins: readonly string[]; attempts: number; backoffMs: number; onFailure: (attempt: number, reason: string) => void },
): Promise<void> {
  let reason = '';
  await withRetries(
    async () => {
      const res = await storageFetch(origins, field, url, { method: 'PUT', body });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
    },
    {
      attempts,
      backoffMs,
      // A redirect, or a URL off the storage origins, is no passing failure: trying again would get it again.
      permanent: (e) => e instanceof StorageRefused,
      // fetch's own errors speak of the connection, never of the body.
      onFailure: (attempt, e) => onFailure(attempt, (reason = (e as Error).message)),
    },
  ).catch((e) => {
    throw e instanceof StorageRefused ? e : new RoundError(`failed after ${attempts} attempts: ${reason}`);
  });
}
