/**
 * npm run server — the training server, configured from SPLITFROZEN_* environment variables (see the README);
 * --backend, --wasm-threads and --checkpoint-seconds override their variables.
 */
import { cliArgs } from '../scripts/cli.ts';
import { ConfigError, configFromEnv, startServer } from './server.ts';

const args = cliArgs('usage: npm run server -- [--backend auto|webgpu|tfjs-node-gpu|tfjs-node|wasm|cpu] [--wasm-threads N] [--checkpoint-seconds S]', {
  backend: { type: 'string' },
  'wasm-threads': { type: 'string' },
  'checkpoint-seconds': { type: 'string' },
});
const env = { ...process.env };
for (const [flag, name] of [['backend', 'BACKEND'], ['wasm-threads', 'WASM_THREADS'], ['checkpoint-seconds', 'CHECKPOINT_SECONDS']] as const) {
  if (args[flag] !== undefined) env[`SPLITFROZEN_${name}`] = args[flag];
}
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
try {
  await startServer(configFromEnv(env));
} catch (e) {
  console.error(`error: ${(e as Error).message}`);
  process.exit(e instanceof ConfigError ? 2 : 1);
}
