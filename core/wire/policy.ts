/**
 * What a device's owner allows to run on their data. The device checks every round request against it (and the
 * server reads it to plan): a segment runs only if the owner approved its SHA-256 for that cut, never below the
 * owner's minimum cut, and the device fetches and uploads only through URLs on the storage origins it was given.
 * The cut a request names is only a label; what protects the text is that the owner approved the graph itself.
 */
import { refuseUnknownKeys } from '../json/suggest.ts';
import { parseDefence, type Defence } from '../privacy/defence.ts';
import { holdsTokenIds, type RoundRequest, type RoundTask } from './round.ts';

/** Cut 0 uploads token embeddings, which map straight back to the text: no owner may allow it. */
export const LOWEST_CUT = 1;
export const DEFAULT_MIN_CUT = 2;

export interface SegmentApproval {
  /** SHA-256 of the ONNX prefix the owner checked (e.g. exported it from the base model themselves). */
  sha256: string;
  /** The base model it was exported from, as the owner names it. */
  model: string;
  cut: number;
  /** SHA-256 of its token table, for a prefix that takes inputs_embeds. */
  tokenTable?: string;
  /** SHA-256 of its weights, for a graph that keeps them as ONNX external data. */
  weights?: string;
  /** SHA-256 of the tokenizer.json it runs with, for a model whose tokenizer the device does not hold (Llama). */
  tokenizer?: string;
  /**
   * The start and end token ids that tokenizer runs with (config.json's bos_token_id and eos_token_id), required with
   * `tokenizer`. Every row begins with the start token and a pair is joined by the end token, so each token's hidden
   * state and the seed of its noise hang on them: a request free to name others would get fresh noise on every copy.
   */
  specialTokens?: SpecialTokenIds;
  /**
   * Generation rounds allowed: their batches carry each completion's token ids to the server (what the loss needs),
   * not only activations. Off unless the owner says so.
   */
  generation?: boolean;
  /**
   * The sequence length generation rounds on this segment run at, required with `generation`. A prompt too long for
   * it keeps its end, so where each later token sits moves with the length: at other lengths the same tokens would
   * get fresh noise (a classification row is only ever cut at its end, at any length).
   */
  seqLen?: number;
  /**
   * The defence on what this segment's uploads carry (core/privacy/defence.ts), a level's name or a setting; the
   * device's DEFENCE setting when absent. Set by the owner only: no round request names one.
   */
  defence?: Defence;
}

export interface SpecialTokenIds {
  bos?: number;
  eos: number;
}

export interface DevicePolicy {
  minCut: number;
  approvals: SegmentApproval[];
  /** The defence of segments approved without one (DEFENCE, default core/privacy/defence.ts's DEFAULT_LEVEL). */
  defence: Defence;
}

export const SHA256 = /^[0-9a-f]{64}$/;

const APPROVAL_FIELDS = ['sha256', 'model', 'cut', 'tokenTable', 'weights', 'tokenizer', 'specialTokens', 'generation', 'seqLen', 'defence'];

/**
 * Checks an approval's shape; returns it typed, or throws naming the field. Strict (the default) where an owner
 * writes one: a field it does not know is refused. Lenient where the server reads a device's answer: a newer
 * device's extra field is dropped, not the device.
 */
export function parseApproval(value: unknown, minCut: number, strict = true): SegmentApproval {
  const a = value as Record<string, unknown>;
  const fail = (field: string, message: string): never => {
    throw new Error(`approval: field '${field}' ${message}`);
  };
  if (typeof a !== 'object' || a === null || Array.isArray(a)) throw new Error('approval: not a JSON object');
  if (strict) refuseUnknownKeys(a, APPROVAL_FIELDS, 'approval');
  if (typeof a.sha256 !== 'string' || !SHA256.test(a.sha256)) fail('sha256', 'must be a hex SHA-256');
  if (typeof a.model !== 'string' || !a.model || a.model.length > 200) fail('model', 'must name the base model (1 to 200 characters)');
  if (!Number.isSafeInteger(a.cut) || (a.cut as number) < minCut) fail('cut', `must be an integer >= ${minCut} (this device's minimum cut)`);
  for (const field of ['tokenTable', 'weights', 'tokenizer'])
    if (a[field] !== undefined && (typeof a[field] !== 'string' || !SHA256.test(a[field] as string))) fail(field, 'must be a hex SHA-256');
  const special = a.specialTokens as Record<string, unknown> | undefined;
  if (special !== undefined && (typeof special !== 'object' || special === null || !holdsTokenIds(special)))
    fail('specialTokens', 'must hold token ids eos (and bos), e.g. {"bos": 128000, "eos": 128001}');
  if (strict && a.tokenizer !== undefined && special === undefined)
    fail(
      'specialTokens',
      'must give the tokenizer\'s start and end token ids with \'tokenizer\' (config.json\'s bos_token_id and eos_token_id), e.g. {"bos": 128000, "eos": 128001}',
    );
  if (a.generation !== undefined && typeof a.generation !== 'boolean') fail('generation', 'must be true or false');
  if (a.seqLen !== undefined && !(Number.isSafeInteger(a.seqLen) && (a.seqLen as number) >= 1)) fail('seqLen', 'must be a positive integer');
  if (strict && a.generation === true && a.seqLen === undefined)
    fail('seqLen', 'must give the sequence length generation rounds run at with "generation": true (the run spec\'s training.seqLen)');
  let defence: Defence | undefined;
  try {
    defence = a.defence === undefined ? undefined : parseDefence(a.defence, 'defence');
  } catch (e) {
    throw new Error(`approval: field ${(e as Error).message}`);
  }
  return {
    sha256: a.sha256 as string,
    model: a.model as string,
    cut: a.cut as number,
    ...(a.tokenTable ? { tokenTable: a.tokenTable as string } : {}),
    ...(a.weights ? { weights: a.weights as string } : {}),
    ...(a.tokenizer ? { tokenizer: a.tokenizer as string } : {}),
    ...(special ? { specialTokens: { ...(special.bos === undefined ? {} : { bos: special.bos as number }), eos: special.eos as number } } : {}),
    ...(a.generation ? { generation: true } : {}),
    ...(a.seqLen !== undefined ? { seqLen: a.seqLen as number } : {}),
    ...(defence ? { defence } : {}),
  };
}

/**
 * An approval as the device stored it when its owner gave it: checked against today's MIN_CUT when a round names it
 * (segmentRefusal), not against the one it was stored under, and read leniently, so that one stored before a field
 * became required is refused (saying what to approve again) while the owner's other approvals keep working.
 */
export function storedApproval(value: unknown): SegmentApproval {
  return parseApproval(value, 0, false);
}

/** The owner's minimum cut from its setting: unset is the default; anything but an integer >= LOWEST_CUT throws. */
export function parseMinCut(value: string | undefined): number {
  if (value === undefined || value === '') return DEFAULT_MIN_CUT;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < LOWEST_CUT)
    throw new Error(`MIN_CUT is ${JSON.stringify(value)}: set an integer >= ${LOWEST_CUT} (default ${DEFAULT_MIN_CUT})`);
  return n;
}

/** The defence the owner set for a segment: its approval's, else the device's. */
export function defenceFor(policy: DevicePolicy, segment: string): Defence {
  return policy.approvals.find((a) => a.sha256 === segment)?.defence ?? policy.defence;
}

/** Why the owner's policy refuses this segment at this cut, or undefined when it allows it. */
export function segmentRefusal(
  policy: DevicePolicy,
  segment: {
    sha256: string;
    cut: number;
    tokenTable?: string;
    weights?: string;
    /** The tokenizer.json the round names, by SHA-256, with the start and end tokens it encodes rows with. */
    tokenizer?: { sha256: string } & SpecialTokenIds;
    task?: RoundTask;
    seqLen?: number;
  },
): string | undefined {
  if (segment.cut < policy.minCut) return `cut ${segment.cut} is below this device's minimum cut ${policy.minCut}, set by its owner`;
  const approval = policy.approvals.find((a) => a.sha256 === segment.sha256);
  if (!approval) return `model segment ${segment.sha256} is not approved by this device's owner (PUT /approvals/${segment.sha256})`;
  if (approval.cut !== segment.cut) return `model segment ${segment.sha256} is approved for cut ${approval.cut}, not ${segment.cut}`;
  if (approval.tokenTable !== segment.tokenTable)
    return `token table ${segment.tokenTable ?? '(none)'} is not the one approved with segment ${segment.sha256} (${approval.tokenTable ?? 'none'})`;
  if (approval.weights !== segment.weights)
    return `weights ${segment.weights ?? '(in the graph)'} are not the ones approved with segment ${segment.sha256} (${approval.weights ?? 'in the graph'})`;
  if (approval.tokenizer !== segment.tokenizer?.sha256)
    return `tokenizer ${segment.tokenizer?.sha256 ?? '(built-in GPT-2)'} is not the one approved with segment ${segment.sha256} (${approval.tokenizer ?? 'built-in GPT-2'})`;
  if (approval.tokenizer !== undefined) {
    const named = (t: SpecialTokenIds | undefined) => (t ? `start token ${t.bos ?? '(none)'}, end token ${t.eos}` : 'none');
    if (!approval.specialTokens)
      return `segment ${segment.sha256} was approved with a tokenizer but without its start and end token ids: approve it again with "specialTokens" (on a device whose worker refuses that field, after updating it)`;
    if (named(segment.tokenizer) !== named(approval.specialTokens))
      return `${named(segment.tokenizer)} are not the ones approved with segment ${segment.sha256} (${named(approval.specialTokens)}): other special tokens would give the owner's text fresh noise`;
  }
  if (segment.task === 'generation' && !approval.generation) {
    return `generation rounds send each completion's token ids to the server; the owner has not allowed that for segment ${segment.sha256} (approve it with "generation": true)`;
  }
  if (segment.task === 'generation' && approval.seqLen !== segment.seqLen)
    return approval.seqLen === undefined
      ? `segment ${segment.sha256} was approved for generation without a sequence length: approve it again with "seqLen"`
      : `generation rounds on segment ${segment.sha256} run at sequence length ${approval.seqLen}, as its owner approved, not ${segment.seqLen}: at another length a long prompt's tokens would get fresh noise`;
  return undefined;
}

/**
 * Origins ("https://host[:port]") a device may fetch from and upload to, from its STORAGE_ORIGINS setting. Plain
 * http is allowed only on 127.0.0.1, for the local stack.
 */
export function parseStorageOrigins(value: string | undefined): string[] {
  const origins = (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const o of origins) {
    const url = URL.canParse(o) ? new URL(o) : undefined;
    if (!url || url.origin !== o || !secureOrLocal(url))
      throw new Error(`STORAGE_ORIGINS holds ${JSON.stringify(o)}: list origins such as https://<account>.r2.cloudflarestorage.com (http only for 127.0.0.1)`);
  }
  return origins;
}

function secureOrLocal(url: URL): boolean {
  return url.protocol === 'https:' || (url.protocol === 'http:' && url.hostname === '127.0.0.1');
}

/** Why a round request's URLs are refused, or undefined when each is on an allowed storage origin. */
export function urlRefusal(origins: readonly string[], request: RoundRequest): string | undefined {
  const named: Array<[string, string]> = [
    ['model.url', request.model.url],
    ...(request.tokenTable ? ([['tokenTable.url', request.tokenTable.url]] as Array<[string, string]>) : []),
    ...(request.weights ? ([['weights.url', request.weights.url]] as Array<[string, string]>) : []),
    ...(request.tokenizer ? ([['tokenizer.url', request.tokenizer.url]] as Array<[string, string]>) : []),
    ['uploads.manifest', request.uploads.manifest],
    ...request.uploads.batches.map((u, i): [string, string] => [`uploads.batches[${i}]`, u]),
  ];
  for (const [field, value] of named) {
    const problem = storageUrlRefusal(origins, field, value);
    if (problem) return problem;
  }
  return undefined;
}

/** Why the device may not fetch or upload to `value` (the request's `field`), or undefined when it is on an allowed origin. */
export function storageUrlRefusal(origins: readonly string[], field: string, value: string): string | undefined {
  if (origins.length === 0) return 'this device has no STORAGE_ORIGINS set: it fetches and uploads nowhere';
  const url = URL.canParse(value) ? new URL(value) : undefined;
  if (!url) return `${field} is not a URL`;
  if (url.username || url.password) return `${field} carries credentials`;
  if (!secureOrLocal(url) || !origins.includes(url.origin)) return `${field} is on ${url.origin}, not on this device's storage origins (${origins.join(', ')})`;
  return undefined;
}
