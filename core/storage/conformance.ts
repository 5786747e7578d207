/**
 * The conformance suite every ObjectStore passes: call it from a test file with a factory for a fresh, empty store.
 * It runs under vitest and asserts the behaviour the rest of the system relies on.
 */
import { describe, expect, it } from 'vitest';
import { ObjectTooLarge, type ObjectStore } from './store.ts';

export interface ServerTraits {
  /** Whether the server checks a presigned URL's signature against the key (AWS, R2 and MinIO do; s3rver does not). */
  checksPresignedKey: boolean;
}

export function objectStoreConformance(name: string, fresh: () => Promise<ObjectStore>, traits: ServerTraits): void {
  describe(`ObjectStore conformance: ${name}`, () => {
    const bytes = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
    const collect = async (it: AsyncIterable<{ key: string; size: number }>) => {
      const out = [];
      for await (const o of it) out.push(o);
      return out;
    };

    it('stores bytes exactly, reports size, and answers undefined for a missing key', async () => {
      const s = await fresh();
      const body = bytes(70_000);
      await s.put('a/b.bin', body);
      expect(await s.get('a/b.bin')).toEqual(body);
      expect(await s.head('a/b.bin')).toEqual({ key: 'a/b.bin', size: 70_000 });
      expect(await s.get('a/missing')).toBeUndefined();
      expect(await s.head('a/missing')).toBeUndefined();
      await s.put('a/t.json', '{"x":1}', 'application/json');
      expect(new TextDecoder().decode(await s.get('a/t.json'))).toBe('{"x":1}');
    });

    it('refuses to read an object larger than the reader allows, and reads one that fits', async () => {
      const s = await fresh();
      await s.put('big.bin', bytes(300_000));
      await expect(s.get('big.bin', { maxBytes: 100_000 })).rejects.toBeInstanceOf(ObjectTooLarge);
      expect(await s.get('big.bin', { maxBytes: 300_000 })).toEqual(bytes(300_000));
      expect(await s.get('missing', { maxBytes: 10 })).toBeUndefined();
    });

    it('overwrites, deletes, and deleting a missing key is not an error', async () => {
      const s = await fresh();
      await s.put('k', bytes(10, 1));
      await s.put('k', bytes(5, 2));
      expect(await s.get('k')).toEqual(bytes(5, 2));
      await s.delete('k');
      expect(await s.get('k')).toBeUndefined();
      await s.delete('k');
    });

    it('lists a prefix in key order, incrementally after a key, across pages', async () => {
      const s = await fresh();
      const keys = Array.from({ length: 1005 }, (_, i) => `runs/r/act/${String(i).padStart(5, '0')}`);
      for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((k) => s.put(k, 'x')));
      await s.put('runs/other/x', 'y');
      const all = await collect(s.list('runs/r/'));
      expect(all.map((o) => o.key)).toEqual(keys);
      expect(all[0].size).toBe(1);
      const after = await collect(s.list('runs/r/', keys[999]));
      expect(after.map((o) => o.key)).toEqual(keys.slice(1000));
    });

    it('presigned URLs let a plain fetch PUT and GET one key without credentials', async () => {
      const s = await fresh();
      const body = bytes(4096);
      const put = await fetch(await s.presignPut('dev/x.bin', 60), { method: 'PUT', body });
      expect(put.status).toBe(200);
      expect(await s.get('dev/x.bin')).toEqual(body);
      const get = await fetch(await s.presignGet('dev/x.bin', 60));
      expect(new Uint8Array(await get.arrayBuffer())).toEqual(body);
    });

    it.runIf(traits.checksPresignedKey)('a URL signed for one key does not open another', async () => {
      const s = await fresh();
      const other = (await s.presignPut('dev/x.bin', 60)).replace('dev/x.bin', 'dev/y.bin');
      expect((await fetch(other, { method: 'PUT', body: 'x' })).status).toBe(403);
      expect(await s.get('dev/y.bin')).toBeUndefined();
    });
  });
}
