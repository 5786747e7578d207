/**
 * An ObjectStore held in memory: for tests of the server's rounds, planner and checkpoints that need storage but not a
 * storage server. Presigned URLs are real: `fetch` is a standard fetch handler that serves them (serve it anywhere,
 * e.g. @hono/node-server, and give its address as `baseUrl`), each URL signed with HMAC for one key, one method and
 * an expiry, so it passes the same conformance suite as S3, the key check included.
 */
import { hmac, timingSafeEqual } from '../auth/signing.ts';
import { ObjectTooLarge, type GetOptions, type ObjectInfo, type ObjectStore } from './store.ts';

export class MemoryStore implements ObjectStore {
  private readonly objects = new Map<string, Uint8Array>();
  private readonly secret = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16)).join('');

  /** Where `fetch` is served; needed only for presigned URLs. */
  constructor(public baseUrl?: string) {}

  async put(key: string, body: Uint8Array | string): Promise<void> {
    // A copy: the caller may reuse its buffer, and S3 keeps what was sent.
    this.objects.set(key, typeof body === 'string' ? new TextEncoder().encode(body) : body.slice());
  }

  async get(key: string, { maxBytes }: GetOptions = {}): Promise<Uint8Array | undefined> {
    const o = this.objects.get(key);
    if (o && maxBytes !== undefined && o.byteLength > maxBytes) throw new ObjectTooLarge(key, maxBytes, o.byteLength);
    return o?.slice();
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const o = this.objects.get(key);
    return o && { key, size: o.byteLength };
  }

  async *list(prefix: string, startAfter?: string): AsyncIterable<ObjectInfo> {
    const found = [...this.objects.keys()].filter((k) => k.startsWith(prefix) && (startAfter === undefined || k > startAfter)).sort();
    for (const key of found) {
      const o = this.objects.get(key);
      if (o) yield { key, size: o.byteLength };
    }
  }

  async delete(key: string): Promise<void> {
    this.objects.delete(key);
  }

  presignPut(key: string, expiresInSeconds: number): Promise<string> {
    return this.presign('PUT', key, expiresInSeconds);
  }

  presignGet(key: string, expiresInSeconds: number): Promise<string> {
    return this.presign('GET', key, expiresInSeconds);
  }

  private async presign(method: string, key: string, expiresInSeconds: number): Promise<string> {
    if (!this.baseUrl) throw new Error('MemoryStore: presigned URLs need baseUrl, the address where store.fetch is served');
    const expires = Date.now() + expiresInSeconds * 1000;
    const url = new URL(`/${key.split('/').map(encodeURIComponent).join('/')}`, this.baseUrl);
    url.searchParams.set('expires', String(expires));
    url.searchParams.set('signature', await hmac(this.secret, `${method}\n${key}\n${expires}`));
    return url.href;
  }

  /** Serves presigned URLs: PUT stores the body, GET returns the object; anything unsigned, expired or mis-signed is 403. */
  fetch = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    const key = url.pathname.slice(1).split('/').map(decodeURIComponent).join('/');
    const expires = Number(url.searchParams.get('expires'));
    const expected = await hmac(this.secret, `${request.method}\n${key}\n${expires}`);
    if (!(expires > Date.now()) || !timingSafeEqual(expected, url.searchParams.get('signature') ?? '')) return new Response('forbidden', { status: 403 });
    if (request.method === 'PUT') {
      await this.put(key, new Uint8Array(await request.arrayBuffer()));
      return new Response(null, { status: 200 });
    }
    const body = await this.get(key);
    return body ? new Response(body as Uint8Array<ArrayBuffer>) : new Response('not found', { status: 404 });
  };
}
