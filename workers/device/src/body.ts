/** Request bodies read before anyone is known to have sent them: never more than a cap. */
import { readUpTo } from '../../../core/streams/read-up-to.ts';

/**
 * The most body bytes read before a request's signature is checked, so an unsigned sender cannot make the Worker
 * (128 MB) hold more. The largest real request is a round's, with one presigned URL (about 500 bytes on R2) per
 * batch: 8 MiB holds some 16,000 batches, 256,000 rows at the default batch of 16, more than a shard's default limit
 * of 200,000 rows.
 */
export const MAX_SIGNED_BODY_BYTES = 8 * 2 ** 20;

/** The request's body, read up to `limit` bytes; undefined past it (as declared, or as it streams in). */
export async function boundedBody(req: Request, limit: number): Promise<Uint8Array | undefined> {
  if (Number(req.headers.get('content-length')) > limit) return undefined;
  if (!req.body) return new Uint8Array(0);
  // A clone: the route reads the body again once the signature holds. Past the cap both branches are cancelled: the
  // clone's source stops only then.
  const body = await readUpTo(req.clone().body!, limit);
  if (!body) await req.body.cancel();
  return body;
}
