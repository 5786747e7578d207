import { describe, expect, it } from 'vitest';
import { NONCE_HEADER, REPLAY_WINDOW_MS, SIGNATURE_HEADER, signRequest, timingSafeEqual, verifyRequest } from './signing.ts';

const secret = 'round-secret';
const asHeaders = (h: Record<string, string>) => new Headers(h);

describe('request signing', () => {
  it('accepts what it signed, and says what is wrong otherwise', async () => {
    const now = 1_800_000_000_000;
    const h = await signRequest(secret, 'POST', '/rounds', '{"a":1}', now);
    expect(await verifyRequest(secret, 'POST', '/rounds', asHeaders(h), '{"a":1}', now + 1000)).toMatchObject({ ok: true, nonce: h[NONCE_HEADER] });
    expect(await verifyRequest(secret, 'POST', '/rounds', asHeaders(h), '{"a":2}', now)).toEqual({ ok: false, reason: 'bad signature' });
    expect(await verifyRequest(secret, 'POST', '/rounds?x=1', asHeaders(h), '{"a":1}', now)).toEqual({ ok: false, reason: 'bad signature' });
    expect(await verifyRequest(secret, 'GET', '/rounds', asHeaders(h), '{"a":1}', now)).toEqual({ ok: false, reason: 'bad signature' });
    expect(await verifyRequest('other', 'POST', '/rounds', asHeaders(h), '{"a":1}', now)).toEqual({ ok: false, reason: 'bad signature' });
    expect(await verifyRequest(secret, 'POST', '/rounds', asHeaders(h), '{"a":1}', now + REPLAY_WINDOW_MS + 1)).toEqual({ ok: false, reason: 'timestamp outside the replay window' });
    const { [SIGNATURE_HEADER]: _, ...unsigned } = h;
    expect(await verifyRequest(secret, 'POST', '/rounds', asHeaders(unsigned), '{"a":1}', now)).toMatchObject({ ok: false, reason: expect.stringMatching(/^missing/) });
  });

  it('gives every request its own nonce', async () => {
    const a = await signRequest(secret, 'GET', '/x');
    const b = await signRequest(secret, 'GET', '/x');
    expect(a[NONCE_HEADER]).not.toBe(b[NONCE_HEADER]);
  });

  it('compares strings of any length', () => {
    expect(timingSafeEqual('abc', 'abc')).toBe(true);
    expect(timingSafeEqual('abc', 'abd')).toBe(false);
    expect(timingSafeEqual('abc', 'ab')).toBe(false);
  });
});
