/** PUT through a presigned URL, retried with exponential backoff; every failed attempt is reported. */
import { withRetries } from '../../../core/retry.ts';
import { RoundError } from './errors.ts';
import { storageFetch, StorageRedirect } from './storage.ts';

export async function putWithRetry(
  field: string,
  url: string,
  body: Uint8Array | string,
  { attempts, backoffMs, onFailure }: { attempts: number; backoffMs: number; onFailure: (attempt: number, reason: string) => void },
): Promise<void> {
  let reason = '';
  await withRetries(
    async () => {
      const res = await storageFetch(field, url, { method: 'PUT', body });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
    },
    {
      attempts,
      backoffMs,
      // A redirect is the storage's answer, not a passing failure: trying again would get it again.
      permanent: (e) => e instanceof StorageRedirect,
      // fetch's own errors speak of the connection, never of the body.
      onFailure: (attempt, e) => onFailure(attempt, (reason = (e as Error).message)),
    },
  ).catch((e) => {
    throw e instanceof StorageRedirect ? e : new RoundError(`failed after ${attempts} attempts: ${reason}`);
  });
}
