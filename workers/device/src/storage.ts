/**
 * Fetches of a round's storage URLs. Each URL is checked against the owner's STORAGE_ORIGINS as they are when it is
 * fetched, not only when the round was requested: an owner who drops an origin stops a running round's fetches and
 * uploads there. STORAGE_ORIGINS vouches for the URL the server sent, not for wherever storage redirects it, so no
 * redirect is followed: a 3xx fails the fetch, naming the request's field, and its target is never contacted.
 * (workerd refuses redirect: 'error': "use 'manual' and check the response status code".)
 */
import { storageUrlRefusal } from '../../../core/wire/policy.ts';
import { RoundError } from './errors.ts';

/** A fetch refused for where it goes (off the origins, or redirected): trying again would be refused again. */
export class StorageRefused extends RoundError {}

export async function storageFetch(origins: readonly string[], field: string, url: string, init: RequestInit = {}): Promise<Response> {
  const refusal = storageUrlRefusal(origins, field, url);
  if (refusal) throw new StorageRefused(refusal);
  const res = await fetch(url, { ...init, redirect: 'manual' });
  if (res.status >= 300 && res.status < 400) {
    await res.body?.cancel();
    throw new StorageRefused(`${field}: storage answered HTTP ${res.status}, a redirect, which this device never follows`);
  }
  return res;
}
