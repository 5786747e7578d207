import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceSecret, signRequest } from '../../../core/auth/signing.ts';
import { DeviceClient } from '../../../core/wire/device-client.ts';
import { DEFAULT_LEVEL, LEVELS } from '../../../core/privacy/defence.ts';
import { serializeRows } from '../../../core/data/shard.ts';
import { startDevice, type RunningDevice } from '../../../infra/local/device.ts';
import { localTempDir } from '../../../infra/local/paths.ts';
import { MAX_SIGNED_BODY_BYTES } from './body.ts';

// The device worker under real workerd: health, the owner's shards, and who may call what.
let device: RunningDevice;
let dir: string;
let secret: string;
const STORAGE = 'http://127.0.0.1:9';
beforeAll(async () => {
  dir = await localTempDir('test-device');
  device = await startDevice({
    id: 'device-t',
    ownerToken: 'owner-token',
    masterSecret: 'round-secret',
    storageOrigins: [STORAGE],
    stateDir: dir,
    vars: { MAX_SHARD_BYTES: '4096', MAX_SHARD_ROWS: '50' },
  });
  secret = await deviceSecret('round-secret', 'device-t');
});
afterAll(async () => {
  await device?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const at = (path: string) => new URL(path, device.url);
const owner = { authorization: 'Bearer owner-token' };
const upload = (name: string, body: string, query = 'format=jsonl', headers: Record<string, string> = owner) =>
  fetch(at(`/shards/${name}?${query}`), { method: 'PUT', headers, body });
const listing = async () =>
  (await (await fetch(at('/shards'), { headers: owner })).json()).shards as Array<{ name: string; rows: number; task: string; etag: string }>;

describe('device worker under workerd', () => {
  it('answers health checks with its own device id', async () => {
    expect(await (await fetch(at('/health'))).json()).toEqual({ ok: true, device: 'device-t', role: 'splitfrozen-device' });
  });

  it('stores a valid shard privately; listing shows names and row counts, never content; deletion works', async () => {
    const res = await upload('reviews', '{"text":"a fine film","label":"1"}\n{"text":"dull","label":0}\n');
    expect(res.status).toBe(201);
    expect(await res.json()).toEqual({ name: 'reviews', rows: 2, task: 'classification', labels: ['0', '1'] });
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

  it('stores generation shards (prompt/completion or GSM8K question/answer), checked line by line, listed with their task', async () => {
    const gsm = '{"question":"Tom has 3 apples and buys 4. How many?","answer":"3 + 4 = <<3+4=7>>7\\n#### 7"}\n{"prompt":"2+2=","completion":" 4"}\n';
    const res = await upload('math', gsm, 'task=generation');
    expect([res.status, await res.json()]).toEqual([201, { name: 'math', rows: 2, task: 'generation', labels: [] }]);
    const bad = await upload('bad', '{"question":"q"}\n', 'task=generation');
    expect([bad.status, (await bad.json()).error]).toEqual([400, "line 1: field 'answer' is missing"]);
    expect((await upload('bad', 'a\tb\n', 'task=generation&format=tsv')).status).toBe(400);
    expect((await upload('bad', gsm, 'task=summarize')).status).toBe(400);
    const listed = await listing();
    expect(listed.find((s) => s.name === 'math')?.task).toBe('generation');
    expect(JSON.stringify(listed)).not.toContain('apples');
    expect((await fetch(at('/shards/math'), { method: 'DELETE', headers: owner })).status).toBe(204);
  });

  it('the training server lists shards with a signed request', async () => {
    const shards = await new DeviceClient(device.url, 'device-t', 'round-secret').shards();
    expect(shards.find((s) => s.name === 'reviews')?.rows).toBe(2);
    await expect(new DeviceClient(device.url, 'device-t', 'wrong-secret').shards()).rejects.toThrow(/HTTP 403: bad signature/);
    // Signed for another device (with that device's secret, or even under this one's): refused.
    await expect(new DeviceClient(device.url, 'device-u', 'round-secret').shards()).rejects.toThrow(/HTTP 403: bad signature/);
    const asOther = await signRequest(secret, 'device-u', 'GET', '/shards');
    expect((await fetch(at('/shards'), { headers: asOther })).status).toBe(403);
    // What the server reads: no shard's size or upload time (a one-row shard's size is its text's length).
    const seen = (await (await fetch(at('/shards'), { headers: await signRequest(secret, 'device-t', 'GET', '/shards') })).json()).shards;
    expect(Object.keys(seen.find((s: { name: string }) => s.name === 'reviews')).sort()).toEqual(['etag', 'labels', 'name', 'rows', 'task']);
    expect(Object.keys((await listing()).find((s) => s.name === 'reviews')!)).toEqual(expect.arrayContaining(['bytes', 'uploaded']));
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
    expect((await fetch(at('/shards/bad%20name!'), { method: 'DELETE', headers: owner })).status).toBe(400);
    expect((await listing()).map((s) => s.name)).toEqual(['reviews']);
  });

  it('refuses unsigned (401), badly signed (403) and replayed (403) round requests, changing nothing', async () => {
    const body = JSON.stringify({ runId: 'r-auth', round: 0 });
    expect((await fetch(at('/rounds'), { method: 'POST', body })).status).toBe(401);
    const forged = { ...(await signRequest('not-the-secret', 'device-t', 'POST', '/rounds', body)), 'content-type': 'application/json' };
    const res = await fetch(at('/rounds'), { method: 'POST', headers: forged, body });
    expect(res.status).toBe(403);
    expect((await res.json()).error).toBe('bad signature');
    // A validly signed request is accepted once; played again, it is refused before it reaches the round.
    const signed = { ...(await signRequest(secret, 'device-t', 'GET', '/rounds/r-auth/0')) };
    expect((await fetch(at('/rounds/r-auth/0'), { headers: signed })).status).toBe(404);
    const replay = await fetch(at('/rounds/r-auth/0'), { headers: signed });
    expect(replay.status).toBe(403);
    expect((await replay.json()).error).toBe('replayed request');
    const stale = await signRequest(secret, 'device-t', 'GET', '/rounds/r-auth/0', '', Date.now() - 10 * 60_000);
    expect((await (await fetch(at('/rounds/r-auth/0'), { headers: stale })).json()).error).toBe('timestamp outside the replay window');
  });

  it('answers 413 to a signed-looking body over the cap, declared or streamed (body.test.ts: read no further)', async () => {
    const forged = await signRequest('not-the-secret', 'device-t', 'POST', '/rounds', '');
    const over = new Uint8Array(MAX_SIGNED_BODY_BYTES + 1);
    const declared = await fetch(at('/rounds'), { method: 'POST', headers: forged, body: over });
    expect([declared.status, (await declared.json()).error]).toEqual([
      413,
      `request body over ${MAX_SIGNED_BODY_BYTES} bytes, the most a signed request may carry`,
    ]);
    // Chunked: no length declared, so only reading tells.
    const chunk = new Uint8Array(2 ** 20);
    let chunks = 0;
    const body = new ReadableStream<Uint8Array>({ pull: (c) => (chunks++ < 24 ? c.enqueue(chunk) : c.close()) });
    const streamed = await fetch(at('/rounds'), { method: 'POST', headers: forged, body, duplex: 'half' } as RequestInit);
    expect(streamed.status).toBe(413);
    // Up to the cap, the signature decides.
    expect((await fetch(at('/rounds'), { method: 'POST', headers: forged, body: new Uint8Array(MAX_SIGNED_BODY_BYTES) })).status).toBe(403);
  });

  it('lists each shard with an etag that changes with its content and confirms no guess of its text', async () => {
    const text = (word: string) => `{"text":"my pin is ${word}","label":1}\n`;
    const etag = async () => (await listing()).find((s) => s.name === 'pins')!.etag;
    expect((await upload('pins', text('4721'))).status).toBe(201);
    const first = await etag();
    // Storage's own etag is the MD5 of the stored text: listed, it would confirm a guess of the text.
    const stored = serializeRows([{ text: 'my pin is 4721', label: 1 }]);
    expect(first).not.toBe(createHash('md5').update(stored).digest('hex'));
    expect(first).toMatch(/^[0-9a-f]{64}$/);
    expect(await etag()).toBe(first);
    expect((await upload('pins', text('4722'))).status).toBe(201);
    expect(await etag()).not.toBe(first);
    expect((await upload('pins', text('4721'))).status).toBe(201);
    expect(await etag()).toBe(first);
    await device.restart();
    expect(await etag()).toBe(first);
    expect((await fetch(at('/shards/pins'), { method: 'DELETE', headers: owner })).status).toBe(204);
  });

  it('refuses a round request with a malformed body, naming the field', async () => {
    const body = JSON.stringify({ runId: 'r1', round: 0, model: { sha256: 'xyz', url: 'http://x' } });
    const res = await fetch(at('/rounds'), { method: 'POST', headers: { ...(await signRequest(secret, 'device-t', 'POST', '/rounds', body)) }, body });
    expect(res.status).toBe(400);
    expect((await res.json()).error).toBe("round request: field 'model.sha256' must be a hex SHA-256");
  });

  it('runs only what its owner approved: segment by SHA-256 and cut, never below the minimum cut, storage origins only', async () => {
    const sha = (c: string) => c.repeat(64);
    const approvals = () => fetch(at('/approvals'), { headers: owner }).then((r) => r.json());
    // Unless the owner sets one per segment, uploads carry the device's defence: DEFENCE, by default the default level.
    expect(await approvals()).toEqual({ minCut: 2, approvals: [], defence: LEVELS[DEFAULT_LEVEL], overridden: [] });
    const approve = (hash: string, body: object, headers: Record<string, string> = owner) =>
      fetch(at(`/approvals/${hash}`), { method: 'PUT', headers, body: JSON.stringify(body) });
    // Only the owner approves, and never below the minimum cut.
    expect((await approve(sha('a'), { model: 'gpt2', cut: 2 }, {})).status).toBe(401);
    const low = await approve(sha('a'), { model: 'gpt2', cut: 1 });
    expect([low.status, (await low.json()).error]).toEqual([400, "approval: field 'cut' must be an integer >= 2 (this device's minimum cut)"]);
    expect((await approve(sha('a'), { model: 'gpt2', cut: 2 })).status).toBe(201);
    expect((await approve(sha('b'), { model: 'gpt2', cut: 3, tokenTable: sha('c'), defence: 'high' })).status).toBe(201);
    expect((await approvals()).approvals.find((a: { sha256: string }) => a.sha256 === sha('b')).defence).toEqual(LEVELS.high);
    const unknown = await approve(sha('b'), { model: 'gpt2', cut: 3, defence: { mechanism: 'gaussian', epsilon: 8 } });
    expect([unknown.status, (await unknown.json()).error]).toEqual([400, 'approval: field defence: delta must be a number in (0, 0.01)']);
    // A misspelt field is refused with the one meant, not dropped (the owner would believe generation allowed).
    const misspelt = await approve(sha('b'), { model: 'gpt2', cut: 3, generaton: true });
    expect([misspelt.status, (await misspelt.json()).error]).toEqual([400, "approval: unknown field 'generaton'; did you mean 'generation'?"]);
    const broken = await fetch(at(`/approvals/${sha('b')}`), { method: 'PUT', headers: owner, body: '{"model": "gpt2",\n "cut": 3,}' });
    expect([broken.status, (await broken.json()).error]).toEqual([400, 'approval: not valid JSON at line 2, column 11 (PropertyNameExpected)']);
    // The server reads the policy to plan.
    expect((await new DeviceClient(device.url, 'device-t', 'round-secret').policy()).approvals.map((a) => a.sha256).sort()).toEqual([sha('a'), sha('b')]);

    const round = (over: Record<string, unknown>) => ({
      runId: 'r-policy',
      round: 0,
      model: { sha256: sha('a'), url: `${STORAGE}/m` },
      cut: 2,
      batchSize: 2,
      seqLen: 8,
      dtype: 'fp32',
      labels: ['0', '1'],
      padTokenId: 0,
      uploads: { batches: [`${STORAGE}/b0`], manifest: `${STORAGE}/m.json` },
      ...over,
    });
    const refusal = async (over: Record<string, unknown>) => {
      const body = JSON.stringify(round(over));
      const res = await fetch(at('/rounds'), { method: 'POST', headers: { ...(await signRequest(secret, 'device-t', 'POST', '/rounds', body)) }, body });
      return [res.status, (await res.json()).error];
    };
    expect(await refusal({ model: { sha256: sha('d'), url: `${STORAGE}/m` } })).toEqual([
      403,
      `model segment ${sha('d')} is not approved by this device's owner (PUT /approvals/${sha('d')})`,
    ]);
    expect(await refusal({ cut: 0 })).toEqual([403, "cut 0 is below this device's minimum cut 2, set by its owner"]);
    expect(await refusal({ cut: 3 })).toEqual([403, `model segment ${sha('a')} is approved for cut 2, not 3`]);
    expect(await refusal({ model: { sha256: sha('b'), url: `${STORAGE}/m` }, cut: 3 })).toEqual([
      403,
      `token table (none) is not the one approved with segment ${sha('b')} (${sha('c')})`,
    ]);
    // A generation round sends completions' token ids: only where the owner allowed it, with the tokenizer approved.
    expect(await refusal({ task: 'generation', labels: [] })).toEqual([
      403,
      `generation rounds send each completion's token ids to the server; the owner has not allowed that for segment ${sha('a')} (approve it with "generation": true)`,
    ]);
    // A tokenizer is approved with its start and end tokens: a request naming others would re-seed the owner's noise.
    const withoutSpecial = await approve(sha('e'), { model: 'llama', cut: 2, tokenizer: sha('f'), generation: true, seqLen: 8 });
    expect([withoutSpecial.status, await withoutSpecial.text()]).toEqual([400, expect.stringContaining("approval: field 'specialTokens' must give")]);
    expect(
      (await approve(sha('e'), { model: 'llama', cut: 2, tokenizer: sha('f'), specialTokens: { bos: 1, eos: 2 }, generation: true, seqLen: 8 })).status,
    ).toBe(201);
    const tokenizer = { sha256: sha('f'), url: `${STORAGE}/t.json`, bos: 1, eos: 2 };
    expect(await refusal({ model: { sha256: sha('e'), url: `${STORAGE}/m` }, task: 'generation', labels: [] })).toEqual([
      403,
      `tokenizer (built-in GPT-2) is not the one approved with segment ${sha('e')} (${sha('f')})`,
    ]);
    for (const other of [{ bos: 7 }, { eos: 9 }, { bos: undefined }])
      expect(
        await refusal({ model: { sha256: sha('e'), url: `${STORAGE}/m` }, task: 'generation', labels: [], tokenizer: { ...tokenizer, ...other } }),
      ).toEqual([
        403,
        `start token ${'bos' in other ? (other.bos ?? '(none)') : 1}, end token ${other.eos ?? 2} are not the ones approved with segment ${sha('e')} (start token 1, end token 2): other special tokens would give the owner's text fresh noise`,
      ]);
    expect(
      await refusal({
        model: { sha256: sha('e'), url: `${STORAGE}/m` },
        task: 'generation',
        labels: [],
        tokenizer: { ...tokenizer, url: 'https://attacker.example/t.json' },
      }),
    ).toEqual([403, `tokenizer.url is on https://attacker.example, not on this device's storage origins (${STORAGE})`]);
    expect((await fetch(at(`/approvals/${sha('e')}`), { method: 'DELETE', headers: owner })).status).toBe(204);
    // Weights beside the graph (ONNX external data) run only as the ones approved with it.
    expect((await approve(sha('9'), { model: 'llama', cut: 2, weights: sha('8') })).status).toBe(201);
    expect(await refusal({ model: { sha256: sha('9'), url: `${STORAGE}/m` } })).toEqual([
      403,
      `weights (in the graph) are not the ones approved with segment ${sha('9')} (${sha('8')})`,
    ]);
    expect(await refusal({ model: { sha256: sha('9'), url: `${STORAGE}/m` }, weights: { sha256: sha('7'), url: `${STORAGE}/w` } })).toEqual([
      403,
      `weights ${sha('7')} are not the ones approved with segment ${sha('9')} (${sha('8')})`,
    ]);
    expect((await fetch(at(`/approvals/${sha('9')}`), { method: 'DELETE', headers: owner })).status).toBe(204);
    expect(await refusal({ model: { sha256: sha('a'), url: 'https://attacker.example/m' } })).toEqual([
      403,
      `model.url is on https://attacker.example, not on this device's storage origins (${STORAGE})`,
    ]);
    expect(await refusal({ uploads: { batches: ['http://10.0.0.1:9/b0'], manifest: `${STORAGE}/m.json` } })).toEqual([
      403,
      `uploads.batches[0] is on http://10.0.0.1:9, not on this device's storage origins (${STORAGE})`,
    ]);
    // Revoked: refused again.
    expect((await fetch(at(`/approvals/${sha('a')}`), { method: 'DELETE', headers: owner })).status).toBe(204);
    expect((await refusal({}))[0]).toBe(403);
    expect((await approvals()).approvals.map((a: { sha256: string }) => a.sha256)).toEqual([sha('b')]);
  });

  it('refuses to upload under a defence without its own DEFENCE_SECRET (a key the server could know would undo the noise)', async () => {
    const keyless = await startDevice({
      id: 'device-k',
      ownerToken: 'owner-token',
      masterSecret: 'round-secret',
      storageOrigins: [STORAGE],
      stateDir: `${dir}-k`,
      vars: { DEFENCE_SECRET: 'too short' },
    });
    try {
      const sha = 'a'.repeat(64);
      expect(
        (await fetch(new URL(`/approvals/${sha}`, keyless.url), { method: 'PUT', headers: owner, body: JSON.stringify({ model: 'gpt2', cut: 2 }) })).status,
      ).toBe(201);
      const request = {
        runId: 'r-key',
        round: 0,
        model: { sha256: sha, url: `${STORAGE}/m` },
        cut: 2,
        batchSize: 2,
        seqLen: 8,
        dtype: 'fp32',
        labels: ['0', '1'],
        padTokenId: 0,
        uploads: { batches: [`${STORAGE}/b0`], manifest: `${STORAGE}/m.json` },
      };
      await expect(new DeviceClient(keyless.url, 'device-k', 'round-secret').startRound(request as never)).rejects.toThrow(
        "HTTP 403: this device's owner set a defence but no DEFENCE_SECRET of 32+ characters",
      );
    } finally {
      await keyless.stop();
      await rm(`${dir}-k`, { recursive: true, force: true });
    }
  });

  it('a segment approved at deploy time (APPROVED_SEGMENTS) is not changed or revoked through /approvals, which says where it is', async () => {
    const sha = 'ab'.repeat(32);
    const options = { id: 'device-d', ownerToken: 'owner-token', masterSecret: 'round-secret', storageOrigins: [STORAGE], stateDir: `${dir}-d` };
    // Approved through /approvals first, then listed at deploy time too: the stored approval no longer decides.
    const before = await startDevice(options);
    const stored = await fetch(new URL(`/approvals/${sha}`, before.url), {
      method: 'PUT',
      headers: owner,
      body: JSON.stringify({ model: 'gpt2', cut: 2, defence: 'high' }),
    });
    expect(stored.status).toBe(201);
    await before.stop();
    const deployed = await startDevice({ ...options, vars: { APPROVED_SEGMENTS: JSON.stringify([{ sha256: sha, model: 'gpt2', cut: 2, defence: 'off' }]) } });
    try {
      const at = new URL(`/approvals/${sha}`, deployed.url);
      type Listed = { defence?: { mechanism: string } };
      const listed = async () => {
        const policy = (await (await fetch(new URL('/approvals', deployed.url), { headers: owner })).json()) as { approvals: Listed[]; overridden: Listed[] };
        return [policy.approvals, policy.overridden].map((list) => list.map((a) => a.defence?.mechanism));
      };
      // The stored one, stricter, is set apart: listed as an approval, it would seem to apply and never would.
      expect(await listed()).toEqual([['none'], ['gaussian']]);
      const fixed = `segment ${sha} is approved in APPROVED_SEGMENTS, which decides its rounds: change or remove it there and deploy again`;
      // Revoking answers that it did not revoke, and deletes the stored approval, which would decide once the deploy's is gone.
      const del = await fetch(at, { method: 'DELETE', headers: owner });
      expect([del.status, await del.json()]).toEqual([409, { error: `${fixed} (the approval stored here is deleted)` }]);
      expect(await listed()).toEqual([['none'], []]);
      // A stricter approval stored beside it would be listed and never apply.
      const put = await fetch(at, { method: 'PUT', headers: owner, body: JSON.stringify({ model: 'gpt2', cut: 2, defence: 'high' }) });
      expect([put.status, await put.json()]).toEqual([409, { error: fixed }]);
      const again = await fetch(at, { method: 'DELETE', headers: owner });
      expect([again.status, await again.json()]).toEqual([409, { error: fixed }]);
      expect(await listed()).toEqual([['none'], []]);
    } finally {
      await deployed.stop();
      await rm(`${dir}-d`, { recursive: true, force: true });
    }
  });

  it('a misconfigured device (APPROVED_SEGMENTS not JSON) answers 500, naming the setting and the fix to its owner only', async () => {
    const broken = await startDevice({
      id: 'device-b',
      ownerToken: 'owner-token',
      masterSecret: 'round-secret',
      storageOrigins: [STORAGE],
      stateDir: `${dir}-b`,
      vars: { APPROVED_SEGMENTS: 'not json' },
    });
    try {
      const res = await fetch(new URL('/approvals', broken.url), { headers: owner });
      expect([res.status, await res.json()]).toEqual([
        500,
        { error: 'this device is misconfigured: APPROVED_SEGMENTS is not JSON: set a JSON list of {sha256, model, cut, ...}, or remove it' },
      ]);
      const anyone = await fetch(new URL('/health', broken.url));
      expect([anyone.status, await anyone.json()]).toEqual([
        500,
        { error: "this device is misconfigured; its owner sees why (the owner's requests, or wrangler tail)" },
      ]);
    } finally {
      await broken.stop();
      await rm(`${dir}-b`, { recursive: true, force: true });
    }
  });
});
