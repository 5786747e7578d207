import { serve } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { afterAll, expect, it } from 'vitest';
import { objectStoreConformance } from './conformance.ts';
import { MemoryStore } from './memory.ts';

const servers: Array<ReturnType<typeof serve>> = [];
afterAll(() => Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve)))));

/** A MemoryStore whose presigned URLs are served on 127.0.0.1. */
async function served(): Promise<MemoryStore> {
  const store = new MemoryStore();
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: store.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
  });
  servers.push(server);
  store.baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return store;
}

objectStoreConformance('MemoryStore', served, { checksPresignedKey: true });

it('refuses an expired or re-methoded presigned URL', async () => {
  const store = await served();
  await store.put('a', 'x');
  expect((await fetch(await store.presignGet('a', -1))).status).toBe(403);
  expect((await fetch(await store.presignGet('a', 60), { method: 'PUT', body: 'y' })).status).toBe(403);
  expect(new TextDecoder().decode(await store.get('a'))).toBe('x');
  await expect(new MemoryStore().presignGet('a', 60)).rejects.toThrow(/need baseUrl/);
});
