// Runs s3rver (the embedded S3-compatible server) on 127.0.0.1 in its own process, and prints {"port": N} once ready.
// usage: node infra/local/s3-server.mjs DIRECTORY BUCKET [PORT]
import S3rver from 's3rver';

const [directory, bucket, port = '0'] = process.argv.slice(2);
const server = new S3rver({ address: '127.0.0.1', port: Number(port), silent: true, directory, configureBuckets: [{ name: bucket }] });
const { port: actual } = await server.run();
console.log(JSON.stringify({ port: actual }));
const stop = () => server.close().then(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// The parent holds the other end of stdin: when it is gone (stopped, killed, or ended by a library's exit hook before
// it could stop this server), stop too rather than run on as an orphan.
process.stdin.on('end', stop).resume();
