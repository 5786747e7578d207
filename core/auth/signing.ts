/**
 * Signed requests between the training server and device workers: HMAC-SHA256 over method, the device's id, path
 * (with query), timestamp, nonce and the body's SHA-256, keyed by that device's own secret. The server holds one
 * master secret and derives each device's from it (deviceSecret), so a device's secret opens that device only, and a
 * request signed for one device is refused by every other. A request is accepted only inside a time window, and a
 * nonce only once (the caller keeps the nonces it has seen for the window).
 * WebCrypto only, so the same code runs in Workers and Node.
 */
export const SIGNATURE_HEADER = 'x-splitfrozen-signature';
export const TIMESTAMP_HEADER = 'x-splitfrozen-timestamp';
export const NONCE_HEADER = 'x-splitfrozen-nonce';
/** How far a request's timestamp may be from the receiver's clock. */
export const REPLAY_WINDOW_MS = 5 * 60 * 1000;

const encoder = new TextEncoder();

export function hex(bytes: ArrayBuffer | Uint8Array): string {
  return Array.from(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes), (b) => b.toString(16).padStart(2, '0')).join('');
}

export async function sha256Hex(data: Uint8Array | string): Promise<string> {
  return hex(await crypto.subtle.digest('SHA-256', (typeof data === 'string' ? encoder.encode(data) : data) as Uint8Array<ArrayBuffer>));
}

export async function hmac(secret: string, message: string): Promise<string> {
  const key = await crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return hex(await crypto.subtle.sign('HMAC', key, encoder.encode(message)));
}

/** The secret of one device (its ROUND_SECRET), derived from the server's master secret and the device's id. */
export async function deviceSecret(masterSecret: string, device: string): Promise<string> {
  if (!masterSecret) throw new Error('the master round secret is empty');
  return hmac(masterSecret, `splitfrozen device round secret v1\n${device}`);
}

async function canonical(device: string, method: string, pathAndQuery: string, timestamp: string, nonce: string, body: Uint8Array | string): Promise<string> {
  return ['splitfrozen-v2', method.toUpperCase(), device, pathAndQuery, timestamp, nonce, await sha256Hex(body)].join('\n');
}

/** Headers that sign a request to one device. `secret`: that device's secret. */
export async function signRequest(
  secret: string,
  device: string,
  method: string,
  pathAndQuery: string,
  body: Uint8Array | string = '',
  now = Date.now(),
): Promise<Record<string, string>> {
  const timestamp = String(now);
  const nonce = hex(crypto.getRandomValues(new Uint8Array(16)));
  return {
    [TIMESTAMP_HEADER]: timestamp,
    [NONCE_HEADER]: nonce,
    [SIGNATURE_HEADER]: await hmac(secret, await canonical(device, method, pathAndQuery, timestamp, nonce, body)),
  };
}

export type Verdict = { ok: true; nonce: string; timestamp: number } | { ok: false; reason: string };

/** Checks signature (for this device) and time window; the caller must still reject a nonce it has seen before. */
export async function verifyRequest(
  secret: string,
  device: string,
  method: string,
  pathAndQuery: string,
  headers: { get(name: string): string | null },
  body: Uint8Array | string,
  now = Date.now(),
): Promise<Verdict> {
  const signature = headers.get(SIGNATURE_HEADER);
  const timestamp = headers.get(TIMESTAMP_HEADER);
  const nonce = headers.get(NONCE_HEADER);
  if (!signature || !timestamp || !nonce) return { ok: false, reason: `missing ${[SIGNATURE_HEADER, TIMESTAMP_HEADER, NONCE_HEADER].join(', ')} headers` };
  const ts = Number(timestamp);
  if (!Number.isFinite(ts) || Math.abs(now - ts) > REPLAY_WINDOW_MS) return { ok: false, reason: 'timestamp outside the replay window' };
  if (!secret) return { ok: false, reason: 'this device has no ROUND_SECRET set' };
  const expected = await hmac(secret, await canonical(device, method, pathAndQuery, timestamp, nonce, body));
  if (!timingSafeEqual(expected, signature)) return { ok: false, reason: 'bad signature' };
  return { ok: true, nonce, timestamp: ts };
}

/** Compares secrets in time independent of where they differ. */
export function timingSafeEqual(a: string, b: string): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < Math.max(a.length, b.length); i++) diff |= (a.charCodeAt(i) || 0) ^ (b.charCodeAt(i) || 0);
  return diff === 0;
}
