/** Rounds, as the training server drives them: start one (signed), and read its status (signed). */
import { Hono } from 'hono';
import { parseRoundRequest } from '../../../core/wire/round.ts';
import { serverOnly } from './auth.ts';
import type { Env } from './env.ts';
import { refusalOf } from './policy-store.ts';

export const rounds = new Hono<{ Bindings: Env }>();

const runner = (env: Env, runId: string, round: number) => env.ROUNDS.get(env.ROUNDS.idFromName(`${runId}/${round}`));

rounds.post('/', serverOnly, async (c) => {
  let request;
  try {
    request = parseRoundRequest(await c.req.json());
  } catch (e) {
    return c.json({ error: (e as Error).message }, 400);
  }
  const refusal = await refusalOf(c.env, request);
  if (refusal) return c.json({ error: refusal }, 403);
  const started = await runner(c.env, request.runId, request.round).start(request);
  return 'conflict' in started ? c.json({ error: started.conflict }, 409) : c.json(started.status, 202);
});

rounds.get('/:runId/:round', serverOnly, async (c) => {
  const round = Number(c.req.param('round'));
  const status = Number.isSafeInteger(round) ? await runner(c.env, c.req.param('runId'), round).status() : undefined;
  return status ? c.json(status) : c.json({ error: `no round ${c.req.param('round')} of run ${c.req.param('runId')} on this device` }, 404);
});
