/** npm run stack — the local infrastructure (S3 server + device workers) until Ctrl-C. */
import { startStack } from '../infra/local/stack.ts';
import { cliArgs, int, run } from '../infra/cli.ts';

const args = cliArgs('usage: npm run stack -- [--devices N] [--dir DIR] [--s3-port PORT]', {
  devices: { type: 'string' },
  dir: { type: 'string' },
  's3-port': { type: 'string' },
});

run(async () => {
  const stack = await startStack({ devices: int('devices', args.devices, 2), dir: args.dir, s3Port: int('s3-port', args['s3-port'], 0) });
  console.log(`\nS3 (s3rver): ${stack.s3.config.endpoint}  bucket ${stack.s3.config.bucket}  key/secret S3RVER/S3RVER`);
  console.log(`round secret (for the training server): ${stack.roundSecret}\n`);
  console.log('| device | url | owner token |\n|---|---|---|');
  for (const d of stack.devices) console.log(`| ${d.id} | ${d.url.href} | ${d.ownerToken} |`);
  console.log('\nUpload a shard:  curl -X PUT -H "authorization: Bearer <owner token>" --data-binary @shard.jsonl "<url>shards/mine?format=jsonl"');
  console.log('Ctrl-C stops everything.');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await stack.stop();
  console.log('stopped');
});
