/** npm run server — the training server, configured from SPLITFROZEN_* environment variables (see the README). */
import { ConfigError, configFromEnv, startServer } from './server.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
try {
  await startServer(configFromEnv());
} catch (e) {
  console.error(`error: ${(e as Error).message}`);
  process.exit(e instanceof ConfigError ? 2 : 1);
}
