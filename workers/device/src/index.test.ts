import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signRequest } from '../../../core/auth/signing.ts';
import { DeviceClient } from '../../../core/wire/device-client.ts';
import { startDevice, type RunningDevice } from '../../../infra/local/device.ts';
import { localTempDir } from '../../../infra/local/paths.ts';

// The device worker under real workerd: health, the owner's shards, and who may call what.
let device: RunningDevice;
let dir: string;
beforeAll(async () => {
  dir = await localTempDir('test-device');
  device = await startDevice({ id: 'device-t', ownerToken: 'owner-token', roundSecret: 'round-secret', stateDir: dir, vars: { MAX_SHARD_BYTES: '4096', MAX_SHARD_ROWS: '50' } });
});
afterAll(async () => {
  await device?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const at = (path: string) => new URL(path, device.url);
const owner = { authorization: 'Bearer owner-token' };
const upload = (name: string, body: string, query = 'format=jsonl', headers: Record<string, string> = owner) => fetch(at(`/shards/${name}?${query}`), { method: 'PUT', headers, body });
const listing = async () => (await (await fetch(at('/shards'), { headers: owner })).json()).shards as Array<{ name: string; rows: number }>;

describe('device worker under workerd', () => {
  it('answers health checks with its own device id', async () => {
    expect(await (await fetch(at('/health'))).json()).toEqual({ ok: true, device: 'device-t', role: 'splitfrozen-device' });
  });

  it('stores a valid shard privately; listing shows names and row counts, never content; deletion works', async () => {
    const res = await upload('reviews', '{"text":"a fine film","label":"1"}\n{"text":"dull","label":0}\n');
    expect(res.status).toBe(201);
    expect(await res.json()).toEqual({ name: 'reviews', rows: 2, labels: ['0', '1'] });
    const tsv = await upload('pairs', 'sentence1\tsentence2\tlabel\nA cat.\tA feline.\tyes\nA dog.\tA car.\tno\n', 'format=tsv&labels=no,yes');
    expect(tsv.status).toBe(201);
    const listed = await listing();
    expect(listed.map(({ name, rows }) => ({ name, rows }))).toEqual([
      { name: 'pairs', rows: 2 },
      { name: 'reviews', rows: 2 },
    ]);
    expect(JSON.stringify(listed)).not.toContain('fine film');
    // No route serves a shard's content, to the owner or anyone.
    expect((await fetch(at('/shards/reviews'), { headers: owner })).status).toBe(404);
    expect((await fetch(at('/shards/pairs'), { method: 'DELETE', headers: owner })).status).toBe(204);
    expect((await fetch(at('/shards/pairs'), { method: 'DELETE', headers: owner })).status).toBe(404);
    expect((await listing()).map((s) => s.name)).toEqual(['reviews']);
  });

  it('the training server lists shards with a signed request', async () => {
    const shards = await new DeviceClient(device.url, 'round-secret').shards();
    expect(shards.find((s) => s.name === 'reviews')?.rows).toBe(2);
    await expect(new DeviceClient(device.url, 'wrong-secret').shards()).rejects.toThrow(/HTTP 403: bad signature/);
  });

  it('refuses a missing (401) or wrong (403) owner token, and stores nothing', async () => {
    expect((await upload('x1', '{"text":"a","label":1}', 'format=jsonl', {})).status).toBe(401);
    const wrong = await upload('x1', '{"text":"a","label":1}', 'format=jsonl', { authorization: 'Bearer nope' });
    expect(wrong.status).toBe(403);
    expect((await fetch(at('/shards/reviews'), { method: 'DELETE', headers: { authorization: 'Bearer nope' } })).status).toBe(403);
    expect((await listing()).map((s) => s.name)).toEqual(['reviews']);
  });

  it('refuses a malformed shard with 400 naming line and field, and an oversized one with 413; nothing half-stored', async () => {
    const bad = await upload('broken', '{"text":"ok","label":1}\n{"text":"no label"}\n');
    expect(bad.status).toBe(400);
    expect((await bad.json()).error).toBe("line 2: field 'label' is missing");
    const big = await upload('huge', `${'{"text":"x","label":1}\n'.repeat(200)}`);
    expect(big.status).toBe(413);
    expect((await big.json()).error).toMatch(/bytes; the limit is 4096/);
    const rows = await upload('many', `${'{"text":"x","label":1}\n'.repeat(51)}`);
    expect(rows.status).toBe(413);
    expect((await rows.json()).error).toBe('line 51: shard has more than 50 rows, the limit');
    expect((await upload('../escape', '{"text":"a","label":1}')).status).toBe(404); // not even routed
    expect((await upload('bad name!', '{"text":"a","label":1}')).status).toBe(400);
    expect((await listing()).map((s) => s.name)).toEqual(['reviews']);
  });

  it('refuses unsigned (401), badly signed (403) and replayed (403) round requests, changing nothing', async () => {
    const body = JSON.stringify({ runId: 'r-auth', round: 0 });
    expect((await fetch(at('/rounds'), { method: 'POST', body })).status).toBe(401);
    const forged = { ...(await signRequest('not-the-secret', 'POST', '/rounds', body)), 'content-type': 'application/json' };
    const res = await fetch(at('/rounds'), { method: 'POST', headers: forged, body });
    expect(res.status).toBe(403);
    expect((await res.json()).error).toBe('bad signature');
    // A validly signed request is accepted once; played again, it is refused before it reaches the round.
    const signed = { ...(await signRequest('round-secret', 'GET', '/rounds/r-auth/0')) };
    expect((await fetch(at('/rounds/r-auth/0'), { headers: signed })).status).toBe(404);
    const replay = await fetch(at('/rounds/r-auth/0'), { headers: signed });
    expect(replay.status).toBe(403);
    expect((await replay.json()).error).toBe('replayed request');
    const stale = await signRequest('round-secret', 'GET', '/rounds/r-auth/0', '', Date.now() - 10 * 60_000);
    expect((await (await fetch(at('/rounds/r-auth/0'), { headers: stale })).json()).error).toBe('timestamp outside the replay window');
  });

  it('refuses a round request with a malformed body, naming the field', async () => {
    const body = JSON.stringify({ runId: 'r1', round: 0, model: { sha256: 'xyz', url: 'http://x' } });
    const res = await fetch(at('/rounds'), { method: 'POST', headers: { ...(await signRequest('round-secret', 'POST', '/rounds', body)) }, body });
    expect(res.status).toBe(400);
    expect((await res.json()).error).toBe("round request: field 'model.sha256' must be a hex SHA-256");
  });
});
