/** Remembers the nonces of signed requests for the replay window, so each signed request is accepted once. */
import { DurableObject } from 'cloudflare:workers';
import { REPLAY_WINDOW_MS } from '../../../core/auth/signing.ts';
import type { Bindings } from './bindings.ts';

export class NonceGuard extends DurableObject<Bindings> {
  /** True the first time a nonce is seen; false for a replay. */
  async claim(nonce: string, timestamp: number): Promise<boolean> {
    const key = `n:${nonce}`;
    if ((await this.ctx.storage.get(key)) !== undefined) return false;
    await this.ctx.storage.put(key, timestamp);
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now() + REPLAY_WINDOW_MS);
    return true;
  }

  /** Forgets nonces whose requests are too old to be accepted anyway. */
  override async alarm(): Promise<void> {
    const cutoff = Date.now() - 2 * REPLAY_WINDOW_MS;
    const all = await this.ctx.storage.list<number>({ prefix: 'n:' });
    const old = [...all].filter(([, ts]) => ts < cutoff).map(([k]) => k);
    for (let i = 0; i < old.length; i += 128) await this.ctx.storage.delete(old.slice(i, i + 128));
    if (all.size > old.length) await this.ctx.storage.setAlarm(Date.now() + REPLAY_WINDOW_MS);
  }
}
