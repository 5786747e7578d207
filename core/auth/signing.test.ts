import { describe, expect, it } from 'vitest';
import { deviceSecret, NONCE_HEADER, REPLAY_WINDOW_MS, SIGNATURE_HEADER, signRequest, timingSafeEqual, verifyRequest } from './signing.ts';

const secret = 'round-secret';
const asHeaders = (h: Record<string, string>) => new Headers(h);

describe('request signing', () => {
  it('accepts what it signed, and says what is wrong otherwise', async () => {
    const now = 1_800_000_000_000;
    const h = await signRequest(secret, 'dev-a', 'POST', '/rounds', '{"a":1}', now);
    expect(await verifyRequest(secret, 'dev-a', 'POST', '/rounds', asHeaders(h), '{"a":1}', now + 1000)).toMatchObject({ ok: true, nonce: h[NONCE_HEADER] });
    expect(await verifyRequest(secret, 'dev-a', 'POST', '/rounds', asHeaders(h), '{"a":2}', now)).toEqual({ ok: false, reason: 'bad signature' });
    expect(await verifyRequest(secret, 'dev-a', 'POST', '/rounds?x=1', asHeaders(h), '{"a":1}', now)).toEqual({ ok: false, reason: 'bad signature' });
    expect(await verifyRequest(secret, 'dev-a', 'GET', '/rounds', asHeaders(h), '{"a":1}', now)).toEqual({ ok: false, reason: 'bad signature' });
    expect(await verifyRequest('other', 'dev-a', 'POST', '/rounds', asHeaders(h), '{"a":1}', now)).toEqual({ ok: false, reason: 'bad signature' });
    expect(await verifyRequest(secret, 'dev-a', 'POST', '/rounds', asHeaders(h), '{"a":1}', now + REPLAY_WINDOW_MS + 1)).toEqual({
      ok: false,
      reason: 'timestamp outside the replay window',
    });
    const { [SIGNATURE_HEADER]: _, ...unsigned } = h;
    expect(await verifyRequest(secret, 'dev-a', 'POST', '/rounds', asHeaders(unsigned), '{"a":1}', now)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/^missing/),
    });
  });

  it('binds a request to one device: each has its own derived secret, and the device id is signed', async () => {
    const master = 'master-secret';
    const [a, b] = [await deviceSecret(master, 'dev-a'), await deviceSecret(master, 'dev-b')];
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(a).not.toBe(b);
    expect(await deviceSecret(master, 'dev-a')).toBe(a);
    expect(await deviceSecret('other-master', 'dev-a')).not.toBe(a);
    const h = await signRequest(a, 'dev-a', 'POST', '/rounds', '{}');
    expect(await verifyRequest(a, 'dev-a', 'POST', '/rounds', asHeaders(h), '{}')).toMatchObject({ ok: true });
    // Device B, with its own secret, refuses it; so would a device configured with A's secret under another id.
    expect(await verifyRequest(b, 'dev-b', 'POST', '/rounds', asHeaders(h), '{}')).toEqual({ ok: false, reason: 'bad signature' });
    expect(await verifyRequest(a, 'dev-b', 'POST', '/rounds', asHeaders(h), '{}')).toEqual({ ok: false, reason: 'bad signature' });
    // A device left without a secret refuses everything, rather than checking against an empty key.
    expect(await verifyRequest('', 'dev-a', 'POST', '/rounds', asHeaders(h), '{}')).toEqual({ ok: false, reason: 'this device has no ROUND_SECRET set' });
    await expect(deviceSecret('', 'dev-a')).rejects.toThrow('the master round secret is empty');
  });

  it('gives every request its own nonce', async () => {
    const a = await signRequest(secret, 'dev-a', 'GET', '/x');
    const b = await signRequest(secret, 'dev-a', 'GET', '/x');
    expect(a[NONCE_HEADER]).not.toBe(b[NONCE_HEADER]);
  });

  it('compares strings of any length', () => {
    expect(timingSafeEqual('abc', 'abc')).toBe(true);
    expect(timingSafeEqual('abc', 'abd')).toBe(false);
    expect(timingSafeEqual('abc', 'ab')).toBe(false);
  });
});
