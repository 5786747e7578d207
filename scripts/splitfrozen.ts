/**
 * npm run cli -- COMMAND: the operator's command line over the server's HTTP API.
 * SPLITFROZEN_URL (default http://127.0.0.1:8080) and SPLITFROZEN_OPERATOR_TOKEN (the server's operator token) say
 * where and who.
 */
import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { deviceSecret, sha256Hex } from '../core/auth/signing.ts';
import { deviceSegment } from '../core/onnx/segment.ts';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS } from '../core/peft/adapter.ts';
import { ServerClient } from '../gpu-server/api/client.ts';
import { pullAdapter, writeMerged } from '../gpu-server/api/pull.ts';
import { familyOf } from '../core/model/family.ts';
import { TOKENIZER_FILE } from '../core/tokenizer/hf.ts';
import { readModelFolder } from '../gpu-server/model-folder/folder.ts';
import { fail } from '../infra/cli.ts';
import { untrained } from './round-progress.ts';
import { parseJson } from '../core/json/parse.ts';

/** Each command's arguments and what it does: the overall usage and each command's --help come from here. */
const COMMANDS: Record<string, { args?: string; about: string }> = {
  runs: { about: 'list runs' },
  create: { args: '--spec FILE.json [--id ID]', about: 'create a run from a spec (docs/server.md); an unknown key is refused with the key meant' },
  trigger: { args: '--run ID', about: "start the run's next round (or resume its unfinished one)" },
  cancel: { args: '--run ID', about: 'stop the running round at its next batch, keeping what trained' },
  delete: { args: '--run ID', about: 'delete the run and everything stored under it' },
  watch: {
    args: '--run ID',
    about: 'follow the round in progress (a line per change when not a terminal, devices left out named), then print the metrics table',
  },
  metrics: { args: '--run ID', about: 'the metrics of every finished round, as JSON' },
  devices: { args: '--run ID', about: "the run's devices: cut, reachability, rows" },
  pull: {
    args: '--run ID --out DIR [--round N|latest] [--merged --model DIR]',
    about: 'download the PEFT adapter; --merged also writes full merged weights (checked before anything is written)',
  },
  'device-secret': {
    args: '--device ID',
    about: "the ROUND_SECRET of one device (wrangler secret put ROUND_SECRET), derived from the server's master secret SPLITFROZEN_ROUND_SECRET",
  },
  segment: {
    args: '--model DIR --cut K [--weights fp32|int8]',
    about: 'the SHA-256s of the segment a device runs at cut K, for its owner to check and approve (PUT /approvals/{sha256} on the device)',
  },
};

const EXIT_CODES = `exit codes: 0 done; 1 the server refused or failed (its answer is printed), or the round failed; 2 a wrong command,
argument or setting (the message says which and how to fix it)`;
const ENVIRONMENT = "environment: SPLITFROZEN_URL (default http://127.0.0.1:8080), SPLITFROZEN_OPERATOR_TOKEN (the server's operator token)";
const USAGE = `usage: npm run cli -- COMMAND [options]     (npm run cli -- COMMAND --help: that command alone)
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${`${name} ${c.args ?? ''}`.padEnd(40)} ${c.about}`)
  .join('\n')}
${ENVIRONMENT}
${EXIT_CODES}`;
const commandUsage = (name: string) => `usage: npm run cli -- ${name} ${COMMANDS[name]!.args ?? ''}\n${COMMANDS[name]!.about}\n${ENVIRONMENT}\n${EXIT_CODES}`;

/** Where the server is and the operator's token, from the environment, each refused with the fix. */
function serverSettings(env: Record<string, string | undefined>): { url: string; token: string } {
  if (env.SPLITFROZEN_TOKEN !== undefined && !env.SPLITFROZEN_OPERATOR_TOKEN) fail('SPLITFROZEN_TOKEN is an old name: set SPLITFROZEN_OPERATOR_TOKEN instead');
  const token = env.SPLITFROZEN_OPERATOR_TOKEN || fail('SPLITFROZEN_OPERATOR_TOKEN is not set: it is the operator token the server was started with');
  const url = env.SPLITFROZEN_URL || 'http://127.0.0.1:8080';
  if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol))
    fail(`SPLITFROZEN_URL is ${JSON.stringify(url)}: set it to the server's http(s) URL, e.g. http://127.0.0.1:8080`);
  return { url, token };
}

const [command, ...rest] = process.argv.slice(2);
const { values: a } = (() => {
  try {
    return parseArgs({
      args: rest,
      options: {
        spec: { type: 'string' },
        id: { type: 'string' },
        device: { type: 'string' },
        cut: { type: 'string' },
        weights: { type: 'string', default: 'fp32' },
        run: { type: 'string' },
        out: { type: 'string' },
        round: { type: 'string', default: 'latest' },
        merged: { type: 'boolean' },
        model: { type: 'string' },
        help: { type: 'boolean' },
      },
      strict: true,
    });
  } catch (e) {
    return fail(`${(e as Error).message}\n\n${USAGE}`);
  }
})();

// A failure of the server, storage or the round exits 1; fail() (a wrong command, argument or setting) exits 2.
main().catch((e: Error) => {
  console.error(`error: ${e.message}`);
  process.exit(1);
});

async function main(): Promise<void> {
  if (!command || command === '--help' || command === 'help') {
    console.log(USAGE);
    return;
  }
  if (!Object.hasOwn(COMMANDS, command)) fail(`unknown command '${command}'\n\n${USAGE}`);
  if (rest.includes('--help')) {
    console.log(commandUsage(command));
    return;
  }
  if (command === 'device-secret') {
    const master = process.env.SPLITFROZEN_ROUND_SECRET || fail("SPLITFROZEN_ROUND_SECRET is not set: it is the training server's master round secret");
    return console.log(await deviceSecret(master, a.device ?? fail(`--device is required\n\n${USAGE}`)));
  }
  if (command === 'segment') {
    const cut = Number(a.cut);
    if (!a.model || !Number.isSafeInteger(cut) || cut < 1) fail(`segment needs --model DIR and --cut K (an integer >= 1)\n\n${USAGE}`);
    if (a.weights !== 'fp32' && a.weights !== 'int8') fail(`--weights is '${a.weights}': use fp32 or int8`);
    const model = await readModelFolder(a.model!);
    if (cut >= model.config.nLayer) fail(`--cut ${cut}: the model has ${model.config.nLayer} blocks`);
    const segment = await deviceSegment(model, cut, a.weights);
    // A segment of a family devices hold no tokenizer of runs with the folder's tokenizer.json, approved with it.
    const tokenizer = !familyOf(model.config).builtinTokenizer ? await sha256Hex(await readFile(join(a.model!, TOKENIZER_FILE))) : undefined;
    return console.log(
      JSON.stringify(
        { sha256: segment.sha256, model: basename(a.model!), cut, tokenTable: segment.tokenTable?.sha256, weights: segment.weights?.sha256, tokenizer },
        null,
        2,
      ),
    );
  }
  const { url, token } = serverSettings(process.env);
  const client = new ServerClient(url, token);
  const runId = () => a.run ?? fail(`--run is required for '${command}'\n\n${USAGE}`);
  switch (command) {
    case 'runs':
      return console.log(JSON.stringify(await client.runs(), null, 2));
    case 'create': {
      if (!a.spec) fail(`--spec is required\n\n${USAGE}`);
      let spec: Record<string, unknown>;
      try {
        spec = parseJson(await readFile(a.spec, 'utf8'), a.spec) as Record<string, unknown>;
      } catch (e) {
        return fail((e as Error).message);
      }
      const record = await client.createRun(a.id ? { ...spec, id: a.id } : spec);
      return console.log(JSON.stringify({ id: record.id, cuts: record.cuts, deepestCut: record.deepestCut }, null, 2));
    }
    case 'trigger':
      return console.log(JSON.stringify({ run: runId(), round: await client.trigger(runId()) }));
    case 'cancel': {
      const p = await client.cancel(runId());
      return console.log(JSON.stringify({ run: runId(), round: p.round, phase: p.phase, batchesTrained: p.batchesTrained, batchesTotal: p.batchesTotal }));
    }
    case 'delete':
      return console.log(JSON.stringify({ run: runId(), ...(await client.deleteRun(runId())) }));
    case 'watch': {
      // A terminal gets one line rewritten in place; a log (not a terminal) a line each time something changes.
      const tty = process.stderr.isTTY;
      let last = '';
      const view = await client.waitIdle(runId(), (v) => {
        const p = v.progress;
        if (!p) return;
        const out = Object.entries(p.devices)
          .filter(([, d]) => d.state === 'skipped' || d.state === 'failed' || d.state === 'rolled-back')
          .map(([id, d]) => `${id} ${d.state}${d.error ? ` (${d.error})` : ''}`);
        const line = `round ${p.round}: ${p.phase} ${p.batchesTrained}/${p.batchesTotal} batches${p.lastLoss === undefined ? '' : ` loss ${p.lastLoss.toFixed(4)}`}${out.length ? `; left out: ${out.join('; ')}` : ''}`;
        if (line === last) return;
        last = line;
        process.stderr.write(tty ? `\r${line}   ` : `${line}\n`);
      });
      if (tty && last) process.stderr.write('\n');
      console.log('| round | order | train loss | eval loss | eval accuracy | server train (s) | MB moved |\n|---|---|---|---|---|---|---|');
      for (const m of view.metrics) {
        console.log(
          `| ${m.round} | ${m.order.join(' > ')} | ${m.trainLoss.toFixed(4)} | ${m.evalLoss?.toFixed(4) ?? '-'} | ${m.evalAccuracy === undefined ? '-' : (m.evalAccuracy * 100).toFixed(1) + '%'} | ${(m.serverTrainMs / 1000).toFixed(1)} | ${(m.bytesMoved / 2 ** 20).toFixed(2)} |`,
        );
      }
      const latest = view.metrics.at(-1);
      if (latest) for (const line of untrained(latest)) console.log(line);
      if (view.progress?.phase === 'failed') throw new Error(`round ${view.progress.round} failed: ${view.progress.error}`);
      return;
    }
    case 'metrics':
      return console.log(JSON.stringify(await client.metrics(runId()), null, 2));
    case 'devices':
      return console.log(JSON.stringify(await client.devices(runId()), null, 2));
    case 'pull': {
      if (!a.out) fail(`--out is required\n\n${commandUsage('pull')}`);
      // Checked before anything is downloaded or written: no half-done pull.
      if (a.merged && !a.model) fail('--merged needs --model DIR: the base model the run was trained from');
      const round = a.round === 'latest' ? 'latest' : Number(a.round);
      if (round !== 'latest' && !(Number.isSafeInteger(round) && round >= 0)) fail(`--round is '${a.round}': use a round number or latest`);
      const files = await pullAdapter(client, runId(), round, a.out);
      console.log(`wrote ${join(a.out, ADAPTER_CONFIG)} and ${join(a.out, ADAPTER_WEIGHTS)}`);
      if (a.merged) {
        const { dir, kind } = await writeMerged(a.model!, files, (await client.run(runId())).spec.task, a.out);
        console.log(`wrote merged weights to ${dir} (config.json + model.safetensors, ${kind})`);
      }
      return;
    }
  }
}
