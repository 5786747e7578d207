/**
 * The dashboard in a real headless browser (Debian's Chromium) against the local stack: a wrong token shows the
 * server's reason and no run data; with the right one the operator starts rounds from the page, which follows them
 * (phase, each device's batches uploaded and trained), then shows the finished round's loss curve, its metrics by
 * round, the runs list's status and accuracy and the next round's cached activations; a round is cancelled from its
 * button.
 * Writes a screenshot under the OS temp folder; `SPLITFROZEN_SCREENSHOT=docs/dashboard.png npx vitest run
 * tests/dashboard.test.ts` also copies it there (the README's picture).
 */
import { existsSync } from 'node:fs';
import { copyFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServerClient } from '../gpu-server/api/client.ts';
import { startServer, type RunningServer } from '../gpu-server/server.ts';
import { startSystem, type TestSystem } from './system.ts';

const CHROMIUM = '/usr/bin/chromium';
const missing = !existsSync(CHROMIUM);
if (missing) {
  // Same rule as ../shared: CI must not go green by skipping the browser test.
  if (process.env.CI === 'true') throw new Error(`${CHROMIUM} is missing: CI needs Debian's chromium (apt-get install chromium)`);
  console.warn(`skipping the dashboard test: ${CHROMIUM} not found (apt-get install chromium)`);
}

const TOKEN = 'op-token';
// Enough batches (20 a device) that the round trains for a few of the page's one-second polls.
const ROWS = 160;
const BATCHES = ROWS / 8;
let sys: TestSystem;
let server: RunningServer;
let client: ServerClient;
let browser: Browser;
// Taken before the stack starts: it points TMPDIR into the project's .local/ for wrangler.
const SHOT = join(tmpdir(), 'splitfrozen-dashboard.png');

describe.skipIf(missing)('dashboard in Chromium', () => {
  beforeAll(async () => {
    sys = await startSystem('test-dashboard', { rowsPerDevice: ROWS });
    server = await startServer({
      host: '127.0.0.1',
      port: 0,
      operatorToken: TOKEN,
      roundSecret: sys.stack.roundSecret,
      s3: sys.stack.s3.config,
      backend: 'wasm',
      // A checkpoint after every batch: training lasts long enough for the page's one-second refresh to see it
      // part-way, even when a loaded machine's devices upload all their batches at once.
      checkpointSeconds: 0,
      log: () => {},
    });
    client = new ServerClient(server.url, TOKEN);
    // Without the background-networking flags Chromium keeps reaching for Google's services on a closed network.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await sys?.close();
  });

  const open = async (token: string): Promise<Page> => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(server.url);
    await page.fill('#token', token);
    await page.click('#login button[type=submit]');
    return page;
  };

  it('serves a page that holds no run data, only script that escapes what it shows', async () => {
    await client.createRun({ ...sys.spec(), id: 'run-dash' });
    const res = await fetch(server.url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(await res.text()).not.toContain('run-dash');
    // Device ids and errors reach the page from configuration and remote devices: never parsed as markup.
    for (const file of ['dashboard.js', 'render.js', 'rounds.js']) {
      const script = await readFile(new URL(`../gpu-server/dashboard/${file}`, import.meta.url), 'utf8');
      expect(script, file).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
      // Served, each as the page loads it.
      expect((await fetch(new URL(`/${file}`, server.url))).headers.get('content-type')).toContain('text/javascript');
    }
  });

  it('shows the reason for a wrong token, and no run data', async () => {
    const page = await open('not-the-token');
    await expect.poll(() => page.textContent('#login-reason')).toBe('The server refused the token: wrong operator token');
    expect(await page.isVisible('#login')).toBe(true);
    expect(await page.isVisible('#main')).toBe(false);
    expect(await page.textContent('body')).not.toContain('run-dash');
    await page.close();
  });

  it('follows a running round, then plots the finished round and shows its metrics and the cache', async () => {
    const page = await open(TOKEN);
    await page.waitForSelector('#runs [data-run="run-dash"]');
    expect(page.url()).not.toContain(TOKEN);
    expect(await page.isVisible('#login')).toBe(false);
    expect(await page.textContent('#live')).toContain('No round since the server started.');

    // The operator starts the round from the page: its button calls the API with the token typed in.
    expect(await page.textContent('#trigger')).toBe('Start round 0');
    expect(await page.isDisabled('#cancel')).toBe(true);
    await page.click('#trigger');
    // Read the page as an operator would, until the round is done: the phase and each device's "trained/batches".
    const seen = new Map<string, Set<string>>();
    const phases = new Set<string>();
    const deadline = Date.now() + 90_000;
    for (let phase = ''; phase !== 'done' && Date.now() < deadline; await sleep(150)) {
      phase = await page.evaluate(() => document.querySelector('#live .phase')?.textContent ?? '');
      phases.add(phase);
      if (phase !== 'training') continue;
      const rows = await page.$$eval('#progress tbody tr', (trs) =>
        trs.map((tr) => [
          tr.getAttribute('data-device')!,
          tr.querySelector('.batches')!.textContent!.trim(),
          tr.querySelector('.uploaded')!.textContent!.trim(),
        ]),
      );
      for (const [device, trained, uploaded] of rows) {
        seen.set(device, (seen.get(device) ?? new Set()).add(trained));
        // A device's uploads as the server lists them: never behind what it trained.
        expect(Number(uploaded.split('/')[0]), `${device}: uploaded ${uploaded}, trained ${trained}`).toBeGreaterThanOrEqual(Number(trained.split('/')[0]));
      }
    }
    expect([...phases]).toEqual(expect.arrayContaining(['training', 'done']));
    expect([...seen.keys()].sort()).toEqual(['device-1', 'device-2']);
    // At least one device was seen part-way and then further: the rows follow the round as it trains.
    const moves = [...seen.values()].some((values) => new Set([...values].map((v) => v.split('/')[0])).size >= 2);
    expect(moves, JSON.stringify([...seen].map(([d, v]) => [d, [...v]]))).toBe(true);

    const view = await client.waitIdle('run-dash', undefined, 100);
    const m0 = view.metrics[0];
    // The finished round's loss curve: one point per trained batch.
    await expect.poll(() => page.getAttribute('#loss-live path.line', 'data-points')).toBe(String(m0.steps));
    expect((await page.getAttribute('#loss-live path.line', 'd'))!.match(/[ML]/g)).toHaveLength(m0.steps);
    expect(await page.$$('#accuracy-rounds circle')).toHaveLength(1);
    const row0 = page.locator('#rounds tr[data-round="0"]');
    expect(await row0.locator('.accuracy').textContent()).toBe(`${(m0.evalAccuracy! * 100).toFixed(1)}%`);
    expect(await row0.textContent()).toContain(m0.trainLoss.toFixed(4));
    for (const id of view.progress!.order)
      expect(await row0.locator('ol.plan').textContent()).toContain(`${id} cut ${view.cuts[id].cut}, ${BATCHES} batches, computed`);
    expect(await page.textContent('#progress tr[data-device="device-1"] .batches')).toBe(` ${BATCHES}/${BATCHES}`);
    expect(await page.textContent('#progress tr[data-device="device-2"] .uploaded')).toBe(` ${BATCHES}/${BATCHES}`);
    // The runs list: where the run stands and its last accuracy.
    const listed = page.locator('#runs tr[data-run="run-dash"]');
    await expect.poll(() => listed.locator('.status').textContent()).toBe('ready');
    expect(await listed.textContent()).toContain('1 of 2');
    expect(await listed.locator('.accuracy').textContent()).toBe(`${(m0.evalAccuracy! * 100).toFixed(1)}%`);

    // Round 1 reuses round 0's activations: the plan says so, and the accuracy plot (by round) gains a point.
    await expect.poll(() => page.textContent('#trigger')).toBe('Start round 1');
    await page.click('#trigger');
    await expect.poll(() => page.textContent('#said')).toBe('round 1 started');
    await client.waitIdle('run-dash', undefined, 100);
    await expect.poll(async () => page.$$('#accuracy-rounds circle').then((c) => c.length)).toBe(2);
    expect(await page.textContent('#rounds tr[data-round="1"] ol.plan')).toContain('cached from round 0');
    // The server writes a round's metrics before it marks the round done: a refresh between the two shows the second
    // point with the phase still 'evaluating', and the page (still polling, the run was running) shows 'done' next.
    await expect.poll(() => page.textContent('#live .phase')).toBe('done');
    expect(await page.$$eval('#accuracy-rounds .tick', (ts) => ts.map((t) => t.textContent)).then((t) => t.slice(-2))).toEqual(['0', '1']);
    await expect.poll(() => listed.locator('.status').textContent()).toBe('done');
    // Every planned round is done: the page offers no further round.
    expect(await page.isDisabled('#trigger')).toBe(true);

    await page.screenshot({ path: SHOT, fullPage: true });
    if (process.env.SPLITFROZEN_SCREENSHOT) await copyFile(SHOT, process.env.SPLITFROZEN_SCREENSHOT);
    await page.close();
  });

  it('cancels a running round from its button, and the runs list says so', async () => {
    // Batches of 2: 80 a device, long enough to be cancelled part-way.
    await client.createRun({ ...sys.spec({ training: { batchSize: 2, seqLen: 24, dtype: 'fp32', seed: 1, rounds: 1 } }), id: 'run-cancel' });
    const page = await open(TOKEN);
    await page.click('#runs [data-run="run-cancel"] button');
    await expect.poll(() => page.textContent('#trigger')).toBe('Start round 0');
    await page.click('#trigger');
    await expect.poll(() => page.isEnabled('#cancel'), { timeout: 30_000 }).toBe(true);
    await page.click('#cancel');
    await expect.poll(() => page.textContent('#said'), { timeout: 15_000 }).toMatch(/^round 0 (cancelled|stopping)$/);
    await expect.poll(() => page.textContent('#live .phase'), { timeout: 15_000 }).toBe('cancelled');
    await expect.poll(() => page.textContent('#runs tr[data-run="run-cancel"] .status')).toBe('cancelled');
    // A cancelled round is resumed, not restarted.
    expect(await page.textContent('#trigger')).toBe('Resume round 0');
    expect((await client.run('run-cancel')).progress!.batchesTrained).toBeLessThan(160);
    await page.close();
  });
});
