/** PUT through a presigned URL, retried with exponential backoff; every failed attempt is reported. */
import { RoundError } from './errors.ts';
import { storageFetch, StorageRedirect } from './storage.ts';

export async function putWithRetry(
  field: string,
  url: string,
  body: Uint8Array | string,
  { attempts, backoffMs, onFailure }: { attempts: number; backoffMs: number; onFailure: (attempt: number, reason: string) => void },
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    let reason: string;
    try {
      const res = await storageFetch(field, url, { method: 'PUT', body });
      if (res.ok) return;
      reason = `HTTP ${res.status}`;
    } catch (e) {
      // A redirect is the storage's answer, not a passing failure: trying again would get it again.
      if (e instanceof StorageRedirect) throw e;
      // fetch's own errors speak of the connection, never of the body.
      reason = (e as Error).message;
    }
    onFailure(attempt, reason);
    if (attempt >= attempts) throw new RoundError(`failed after ${attempts} attempts: ${reason}`);
    await new Promise((resolve) => setTimeout(resolve, backoffMs * 2 ** (attempt - 1)));
  }
}
