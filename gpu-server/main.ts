/** npm run server — the training server, configured by flags and SPLITFROZEN_* variables (gpu-server/config.ts). */
import { ConfigError, SERVER_USAGE, serverConfig } from './config.ts';
import { startServer } from './server.ts';

if (process.argv.includes('--help')) {
  console.log(SERVER_USAGE);
  process.exit(0);
}
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
try {
  await startServer(serverConfig(process.argv.slice(2), process.env));
} catch (e) {
  console.error(`error: ${(e as Error).message}`);
  process.exit(e instanceof ConfigError ? 2 : 1);
}
