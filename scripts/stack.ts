/**
 * npm run stack — the local infrastructure (S3 server + device workers) until Ctrl-C or SIGTERM, which stop all of
 * it. The npm script execs tsx, which passes both signals on to this process: under a plain `sh -c`, npm's SIGTERM
 * ended the shell and left the S3 server and workerd running.
 */
import { descendants } from '../infra/local/proc-memory.ts';
import { startStack } from '../infra/local/stack.ts';
import { cliArgs, int, run } from '../infra/cli.ts';

const args = cliArgs('usage: npm run stack -- [--devices N] [--dir DIR] [--s3-port PORT]', {
  devices: { type: 'string' },
  dir: { type: 'string' },
  's3-port': { type: 'string' },
});

run(async () => {
  // Listening before the stack starts: wrangler's own exit hook, registered as it starts, ends the process on these
  // signals, and listeners run in the order they came. on, not once: a signal often comes twice (a terminal's Ctrl-C
  // reaches the whole process group), and a second one with no listener would end the process at once.
  let stopping = false;
  const signalled = new Promise<void>((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const)
      process.on(signal, () => {
        if (!stopping) console.log('stopping the S3 server and every device worker');
        stopping = true;
        resolve();
      });
  });
  const stack = await startStack({ devices: int('devices', args.devices, 2), dir: args.dir, s3Port: int('s3-port', args['s3-port'], 0) });
  // What the stack started (workerd, the S3 server, wrangler's esbuild service), listed once it is up and ended as
  // this process exits: a part whose own shutdown leaves a child behind (esbuild was seen left running after a
  // SIGINT on a loaded machine) leaves no orphan.
  const children = await descendants(process.pid);
  process.on('exit', () => {
    for (const { pid } of children)
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // Already gone.
      }
  });
  const { endpoint, bucket, region, accessKeyId, secretAccessKey } = stack.s3.config;
  console.log(`\nS3 (s3rver): ${endpoint}  bucket ${bucket}\nFor the training server (npm run server), paste:`);
  const exports = {
    SPLITFROZEN_S3_ENDPOINT: endpoint,
    SPLITFROZEN_S3_BUCKET: bucket,
    SPLITFROZEN_S3_REGION: region,
    SPLITFROZEN_S3_ACCESS_KEY_ID: accessKeyId,
    SPLITFROZEN_S3_SECRET_ACCESS_KEY: secretAccessKey,
    SPLITFROZEN_ROUND_SECRET: stack.roundSecret,
  };
  for (const [k, v] of Object.entries(exports)) if (v !== undefined) console.log(`export ${k}='${v}'`);
  console.log();
  console.log('| device | url | owner token |\n|---|---|---|');
  for (const d of stack.devices) console.log(`| ${d.id} | ${d.url.href} | ${d.ownerToken} |`);
  console.log('\nUpload a shard:  curl -X PUT -H "authorization: Bearer <owner token>" --data-binary @shard.jsonl "<url>shards/mine?format=jsonl"');
  console.log('Ctrl-C stops everything.');
  await signalled;
  // wrangler's exit hook may end this process before stop() returns; the S3 server then stops as its stdin closes.
  await stack.stop();
});
