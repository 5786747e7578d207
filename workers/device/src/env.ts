import type { NonceGuard } from './nonces.ts';
import type { RoundRunner } from './runner.ts';
import type { Bindings } from './bindings.ts';

/** The device worker's bindings (wrangler.toml) and secrets (`wrangler secret put`), as given; settings.ts checks them. */
export interface Env extends Bindings {
  ROUNDS: DurableObjectNamespace<RoundRunner>;
  NONCES: DurableObjectNamespace<NonceGuard>;
}
