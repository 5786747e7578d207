/** npm run deploy:check — builds the device worker as `wrangler deploy` would and checks its size against the limit. */
import { measureBundle } from '../infra/deploy/bundle.ts';
import { cliArgs, run } from '../infra/cli.ts';

const args = cliArgs('usage: npm run deploy:check -- [--env NAME]', { env: { type: 'string' } });

run(async () => {
  const size = await measureBundle(args.env ?? '');
  console.log(JSON.stringify(size, null, 2));
  if (!size.fits) throw new Error(`the worker is ${(size.totalGzipBytes / 2 ** 20).toFixed(2)} MB gzipped, over the ${size.limitGzipBytes / 2 ** 20} MB limit`);
});
