/**
 * Fetches of a round's storage URLs. STORAGE_ORIGINS vouches for the URL the server sent, not for wherever storage
 * redirects it, so no redirect is followed: a 3xx fails the fetch, naming the request's field, and its target is
 * never contacted. (workerd refuses redirect: 'error': "use 'manual' and check the response status code".)
 */
import { RoundError } from './errors.ts';

export class StorageRedirect extends RoundError {}

export async function storageFetch(field: string, url: string, init: RequestInit = {}): Promise<Response> {
  const res = await fetch(url, { ...init, redirect: 'manual' });
  if (res.status >= 300 && res.status < 400) {
    await res.body?.cancel();
    throw new StorageRedirect(`${field}: storage answered HTTP ${res.status}, a redirect, which this device never follows`);
  }
  return res;
}
