/** The server's client of a device, against a real HTTP server that answers as a lying device would. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AnswerError } from './answers.ts';
import { DeviceClient, MAX_ANSWER_BYTES } from './device-client.ts';

let server: Server;
let base: string;
let redirectFollowed = false;
const answers: Record<string, (res: import('node:http').ServerResponse) => void> = {
  '/shards': (res) => res.end('{}'),
  '/approvals': (res) => res.end(JSON.stringify({ minCut: 0, approvals: [] })),
  '/rounds/big/0': (res) => {
    res.setHeader('content-type', 'application/json');
    res.write('{"state":"running","x":"');
    // Streamed without a length, more than any answer needs.
    const chunk = 'x'.repeat(1024 * 1024);
    for (let i = 0; i < 6; i++) res.write(chunk);
    res.end('"}');
  },
  '/rounds/redirect/0': (res) => res.writeHead(302, { location: `${base}/elsewhere` }).end(),
  '/elsewhere': (res) => {
    redirectFollowed = true;
    res.end('{"state":"complete","batchesDone":1,"batchesTotal":1}');
  },
  '/rounds/error/0': (res) => res.writeHead(500).end(JSON.stringify({ error: 'failed\n[server] forged line\u001b[31m' })),
};

beforeAll(async () => {
  server = createServer((req, res) => (answers[req.url!.split('?')[0]] ?? ((r) => r.writeHead(404).end()))(res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise((r) => server.close(r)));

describe('device client against a lying device', () => {
  const client = () => new DeviceClient(base, 'liar', 'master secret', 5_000);

  it('refuses a listing or policy outside their schema, as an AnswerError naming the field', async () => {
    await expect(client().shards()).rejects.toThrow(new AnswerError("shard listing: field 'shards' Invalid input: expected array, received undefined"));
    await expect(client().policy()).rejects.toThrow("policy: field 'minCut' must be an integer >= 1");
  });

  it('stops reading an answer longer than any answer needs', async () => {
    const error = await client()
      .roundStatus('big', 0)
      .catch((e: Error) => e.message);
    expect(error).toBe(`device liar GET /rounds/big/0: answer longer than the ${MAX_ANSWER_BYTES} bytes any answer needs`);
  });

  it('never follows a redirect with its signed request', async () => {
    await expect(client().roundStatus('redirect', 0)).rejects.toThrow();
    expect(redirectFollowed).toBe(false);
  });

  it("keeps a device's error text on one line, escaped", async () => {
    const error = await client()
      .roundStatus('error', 0)
      .catch((e: Error) => e.message);
    expect(error).toBe('device liar GET /rounds/error/0: HTTP 500: failed\\u{a}[server] forged line\\u{1b}[31m');
  });
});
