/**
 * Forged requests: what an attacker without the right secret, or with another device's, sends to a device and to
 * the server. Every one must be refused. A replay counts only its second sending (the first is genuine).
 */
import { deviceSecret, signRequest } from '../../core/auth/signing.ts';
import type { RoundRequest } from '../../core/wire/round.ts';
import type { RunningDevice } from '../../infra/local/device.ts';

export interface ForgedResult {
  sent: number;
  accepted: number;
  /** Statuses by kind, e.g. { unsigned: [401, ...] }. */
  byKind: Record<string, number[]>;
}

export async function forgedRequests(o: {
  device: RunningDevice;
  other: RunningDevice;
  masterSecret: string;
  /** A request the device would accept: an approved segment at its cut, URLs on its storage. */
  valid: RoundRequest;
  serverUrl: string;
  repeat: number;
}): Promise<ForgedResult> {
  const own = await deviceSecret(o.masterSecret, o.device.id);
  const others = await deviceSecret(o.masterSecret, o.other.id);
  const at = (path: string) => new URL(path, o.device.url);
  const post = async (body: unknown, headers: (text: string) => Promise<Record<string, string>>) => {
    const text = JSON.stringify(body);
    return (await fetch(at('/rounds'), { method: 'POST', headers: { ...(await headers(text)), 'content-type': 'application/json' }, body: text })).status;
  };
  const signed = (secret: string, device: string, now?: number) => (text: string) => signRequest(secret, device, 'POST', '/rounds', text, now);
  const round = (i: number, over: Partial<RoundRequest>) => ({ ...o.valid, runId: `forged-${i}`, ...over });
  const kinds: Record<string, (i: number) => Promise<number>> = {
    unsigned: (i) => post(round(i, {}), async () => ({})),
    'wrong secret': (i) => post(round(i, {}), signed('not-the-secret', o.device.id)),
    expired: (i) => post(round(i, {}), signed(own, o.device.id, Date.now() - 10 * 60_000)),
    'signed for another device': (i) => post(round(i, {}), signed(others, o.other.id)),
    'another device id under this secret': (i) => post(round(i, {}), signed(own, o.other.id)),
    'wrong cut': (i) => post(round(i, { cut: o.valid.cut + 1 }), signed(own, o.device.id)),
    'below the minimum cut': (i) => post(round(i, { cut: 0 }), signed(own, o.device.id)),
    'unapproved segment': (i) => post(round(i, { model: { sha256: 'e'.repeat(64), url: o.valid.model.url } }), signed(own, o.device.id)),
    'foreign storage': (i) => post(round(i, { uploads: { ...o.valid.uploads, manifest: 'https://collector.example/m' } }), signed(own, o.device.id)),
    replayed: async () => {
      const headers = await signRequest(own, o.device.id, 'GET', '/shards');
      const first = await fetch(at('/shards'), { headers });
      if (first.status !== 200) throw new Error(`the genuine request was refused: HTTP ${first.status}`);
      return (await fetch(at('/shards'), { headers })).status;
    },
    'owner token guessed': async () =>
      (await fetch(at(`/approvals/${'e'.repeat(64)}`), { method: 'PUT', headers: { authorization: 'Bearer guess' }, body: '{"model":"x","cut":9}' })).status,
    'operator token guessed': async () => (await fetch(new URL('/runs', o.serverUrl), { headers: { authorization: 'Bearer guess' } })).status,
  };
  const byKind: Record<string, number[]> = {};
  for (const [kind, send] of Object.entries(kinds)) {
    byKind[kind] = [];
    for (let i = 0; i < o.repeat; i++) byKind[kind].push(await send(i));
  }
  const all = Object.values(byKind).flat();
  return { sent: all.length, accepted: all.filter((s) => s < 400).length, byKind };
}
