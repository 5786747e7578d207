/**
 * The attack suite against one device setting: what a curious server recovers of a device's text from what the
 * device uploads at a cut, by every attack of core/privacy/attacks. The server knows the model, the cut, the defence
 * and its setting, and public text (the attacker's); it does not know the device's secret. The device side here is
 * the device's own code (core/privacy/defend.ts, sanitise.ts) around the same prefix graph, run on onnxruntime-node.
 */
import * as ort from 'onnxruntime-node';
import type { Model } from '../core/model/family.ts';
import { tokenTableName } from '../core/onnx/embedding.ts';
import { exportPrefix, PREFIX_OUTPUT } from '../core/onnx/prefix.ts';
import { rowLength, type Activations, type PrefixRun } from '../core/privacy/attacks/activations.ts';
import { averageCopies } from '../core/privacy/attacks/adaptive.ts';
import { decode, trainDecoder } from '../core/privacy/attacks/learned.ts';
import { nearestAttack, type Reference } from '../core/privacy/attacks/nearest.ts';
import { mostFrequent, scoreGuesses, type AttackScore } from '../core/privacy/attacks/score.ts';
import { whiteBoxSearch } from '../core/privacy/attacks/whitebox.ts';
import { calibrationClip, CALIBRATION_SEQ_LEN, CALIBRATION_TEXTS, defendHidden } from '../core/privacy/defend.ts';
import { describeDefence, type Defence } from '../core/privacy/defence.ts';
import { sanitiser, santext, type TokenMechanism } from '../core/privacy/sanitise.ts';
import { groupMechanism, type TokenGroups } from '../core/privacy/groups.ts';
import { groupsFromText } from '../core/privacy/groups-from-text.ts';
import { posteriorDecoder } from '../core/privacy/attacks/posterior.ts';
import { defenceKey } from '../core/privacy/stream.ts';
import { sha256Hex } from '../core/auth/signing.ts';
import { GPT2Tokenizer } from '../core/tokenizer/gpt2.ts';
import type { TextInput, Tokenizer } from '../core/tokenizer/tokenizer.ts';

/** A tokenized batch [rows, seq]. */
export interface Batch {
  ids: Int32Array;
  mask: Int32Array;
  rows: number;
  seq: number;
}

export function encodeTexts(tokenizer: Tokenizer, texts: readonly TextInput[], seqLen: number): Batch {
  const enc = tokenizer.encodeBatch(texts, { maxLength: seqLen });
  return { ids: enc.ids, mask: enc.attentionMask, rows: enc.rows, seq: enc.seqLen };
}

/** The prefix [0, cut) on onnxruntime-node, run in chunks of rows. */
export async function ortPrefix(model: Model, cut: number): Promise<{ run: PrefixRun; segment: string; release: () => Promise<void> }> {
  const bytes = exportPrefix(model, { cut });
  const session = await ort.InferenceSession.create(bytes, { logSeverityLevel: 3 });
  const d = model.config.nEmbd;
  const run: PrefixRun = async (ids, mask, rows, seq) => {
    const out = new Float32Array(rows * seq * d);
    const step = Math.max(1, Math.floor(16384 / seq));
    for (let r = 0; r < rows; r += step) {
      const n = Math.min(step, rows - r);
      const shape = [n, seq];
      const slice = (a: Int32Array) => BigInt64Array.from(a.subarray(r * seq, (r + n) * seq), BigInt);
      const res = await session.run({ input_ids: new ort.Tensor('int64', slice(ids), shape), attention_mask: new ort.Tensor('int64', slice(mask), shape) });
      out.set(res[PREFIX_OUTPUT].data as Float32Array, r * seq * d);
    }
    return out;
  };
  return { run, segment: await sha256Hex(bytes), release: () => session.release() };
}

/**
 * What the owner set on a device: a defence on the hidden states, or token sanitisation before the prefix (SanText
 * over the public vocabulary, or randomised response within groups of at least minSize tokens: the owner's `table`, or
 * groups built from the public text).
 */
export type DeviceSetting =
  { kind: 'output'; defence: Defence } | { kind: 'sanitise'; epsilon: number } | { kind: 'groups'; epsilon: number; minSize: number; table?: TokenGroups };

export function describeSetting(s: DeviceSetting): string {
  if (s.kind === 'output') return describeDefence(s.defence);
  return s.kind === 'sanitise' ? `sanitise eps ${s.epsilon}` : `groups of ${s.minSize}+ eps ${s.epsilon}`;
}

/** A device's side of an upload under a setting, for any key (the device's, the attacker's own, fresh ones). */
export interface DeviceSide {
  setting: DeviceSetting;
  /** The clip norm of the segment (calibration text), where the setting clips. */
  clip?: number;
  /** The sanitisation before the prefix, if any, and the tokens it may take as input: public, as the attacker knows it. */
  sanitising?: { mechanism: TokenMechanism; sources: Int32Array };
  /** Token ids as they enter the prefix. */
  inputIds(batch: Batch, key: Uint8Array): Int32Array;
  /** In place: the hidden states as they leave the device. */
  defend(batch: Batch, hidden: Float32Array, key: Uint8Array): void;
}

export async function deviceSide(
  model: Model,
  prefix: { run: PrefixRun; segment: string },
  setting: DeviceSetting,
  tokenizer: Tokenizer,
  pub: PublicText,
): Promise<DeviceSide> {
  const d = model.config.nEmbd;
  const calibration = encodeTexts(tokenizer, CALIBRATION_TEXTS, CALIBRATION_SEQ_LEN);
  const clip = calibrationClip(await prefix.run(calibration.ids, calibration.mask, calibration.rows, calibration.seq), calibration.mask, d);
  const defence: Defence = setting.kind === 'output' ? setting.defence : { mechanism: 'none' };
  const run = { defence, clip, segment: prefix.segment };
  const table = model.params.get(tokenTableName(model.config))!;
  const keep = new Set([tokenizer.special.bos, tokenizer.special.eos].filter((t): t is number => t !== undefined));
  const sanitising = sanitisingOf(setting, pub, keep, tokenizer, (t) => table.subarray(t * d, (t + 1) * d));
  const sanitisers = new Map<Uint8Array, ReturnType<typeof sanitiser>>();
  return {
    setting,
    clip: defence.mechanism === 'none' ? undefined : clip,
    sanitising,
    inputIds(batch, key) {
      if (!sanitising) return batch.ids;
      let s = sanitisers.get(key);
      if (!s) sanitisers.set(key, (s = sanitiser(sanitising.mechanism, key, new TextEncoder().encode(`${prefix.segment}\n${describeSetting(setting)}`))));
      return s(batch.ids, batch.mask, batch.rows, batch.seq);
    },
    defend(batch, hidden, key) {
      defendHidden(hidden, batch.ids, batch.mask, batch.rows, batch.seq, d, { ...run, key });
    },
  };
}

/** A setting's sanitisation, built from the attacker's public text as a device's public tables are. */
function sanitisingOf(
  setting: DeviceSetting,
  pub: PublicText,
  keep: ReadonlySet<number>,
  tokenizer: Tokenizer,
  embedding: (t: number) => Float32Array,
): DeviceSide['sanitising'] {
  if (setting.kind === 'sanitise') {
    const tokens = pub.vocabulary.filter((t) => !keep.has(t));
    return { mechanism: santext({ tokens, embedding, keep }, setting.epsilon), sources: tokens };
  }
  if (setting.kind !== 'groups') return undefined;
  const groups = setting.table ?? publicGroups(tokenizer, pub.rows, setting.minSize);
  return { mechanism: groupMechanism(groups, setting.epsilon), sources: Int32Array.from(groups.groups.flat()) };
}

/** Groups of at least minSize similar tokens from public text's token rows, as an owner would load them (start and end tokens apart). */
export function publicGroups(tokenizer: Tokenizer, rows: readonly Int32Array[], minSize: number): TokenGroups {
  const keep = [tokenizer.special.bos, tokenizer.special.eos].filter((t): t is number => t !== undefined);
  return { ...groupsFromText(rows, { minSize, skip: new Set(keep), placeholder: tokenizer.special.eos ?? tokenizer.special.pad ?? 0 }), keep };
}

/** Runs the device's side on a batch: its upload under `key`. */
export async function upload(device: DeviceSide, prefix: PrefixRun, batch: Batch, key: Uint8Array): Promise<Float32Array> {
  const hidden = await prefix(device.inputIds(batch, key), batch.mask, batch.rows, batch.seq);
  device.defend(batch, hidden, key);
  return hidden;
}

export interface SuiteOptions {
  /** Copies of the victims' rows the adaptive attacker collects (in other batch layouts). */
  copies: number;
  /** Candidates the white-box search tries at a position when the public vocabulary is larger. */
  shortlist: number;
  /** Where the keys come from (the device's, the attacker's own, fresh ones): random unless a test fixes them. */
  keys?: () => Uint8Array;
}

const randomKey = () => defenceKey(crypto.getRandomValues(new Uint8Array(32)));

export interface SuiteResult {
  setting: string;
  clip?: number;
  /** informed: against sanitisation, the white-box search's tokens turned into their likeliest originals (posterior.ts). */
  attacks: { nearest: AttackScore; whitebox: AttackScore; learned: AttackScore; adaptive: AttackScore; informed?: AttackScore };
  /** The adaptive attack on copies whose noise is drawn afresh each time (the design the derived noise replaces). */
  adaptiveFreshNoise?: AttackScore;
  /** Whether every copy the adaptive attacker collected was bit-equal to the first upload. */
  copiesBitEqual: boolean;
  strongest: { attack: string; recovery: number; majority: number; rowsHalf: number };
}

/** What the attacker holds of public text, the same whatever the device's setting. */
export interface PublicText {
  batch: Batch;
  /** Its hidden states at the cut, undefended. */
  clean: Reference;
  /** Its tokens, in order of first appearance: what the attacks try, and the candidates of a sanitising device. */
  vocabulary: Int32Array;
  /** Its most frequent token but the start token: the majority baseline's guess. */
  majority: number;
  /**
   * All the public text's rows as tokens (the batch's, or more where the task has more): what groups of similar
   * tokens are built from, and the prior of the attacker who decodes sanitised tokens; public, so both sides hold it.
   */
  rows: Int32Array[];
}

export async function publicText(prefix: PrefixRun, tokenizer: Tokenizer, batch: Batch, d: number, more: Batch = batch): Promise<PublicText> {
  const clean = referenceOf(batch, await prefix(batch.ids, batch.mask, batch.rows, batch.seq), d);
  return {
    batch,
    clean,
    vocabulary: Int32Array.from(new Set(clean.tokens)),
    majority: mostFrequent(clean.tokens, startTokens(tokenizer)),
    rows: tokenRows(more),
  };
}

/** A batch's rows as token lists, real positions only. */
export function tokenRows(b: Batch): Int32Array[] {
  return Array.from({ length: b.rows }, (_, r) => b.ids.slice(r * b.seq, r * b.seq + rowLength(b.mask, r, b.seq)));
}

const startTokens = (tokenizer: Tokenizer) => new Set([tokenizer.special.bos].filter((t): t is number => t !== undefined));

/** Every attack on the victims' upload under the device's setting; the device's key is drawn here and never shown to the attacks. */
export async function attackSuite(
  model: Model,
  prefix: PrefixRun,
  device: DeviceSide,
  tokenizer: Tokenizer,
  pub: PublicText,
  victims: Batch,
  o: SuiteOptions,
): Promise<SuiteResult> {
  const d = model.config.nEmbd;
  const key = o.keys ?? randomKey;
  const deviceKey = key();
  const attackerKey = key();
  const received: Activations = { hidden: await upload(device, prefix, victims, deviceKey), mask: victims.mask, rows: victims.rows, seq: victims.seq, d };
  const defended = referenceOf(pub.batch, await upload(device, prefix, pub.batch, attackerKey), d);
  const score = (g: Int32Array) => scoreGuesses(g, victims.ids, victims.mask, victims.rows, victims.seq, pub.majority, startTokens(tokenizer));
  const candidates = Int32Array.from(pub.vocabulary).sort();
  const whitebox = (a: Activations) => whiteBoxSearch(a, prefix, { vocabulary: candidates, reference: pub.clean, shortlist: o.shortlist, clip: device.clip });

  const wbGuesses = await whitebox(received);
  const copies = await collectCopies(device, prefix, victims, () => deviceKey, o.copies, d);
  const copiesBitEqual = copies.every((c) => c.hidden.every((x, i) => Object.is(x, received.hidden[i])));
  // Bit-equal copies average to the upload itself: the search on it would repeat the one just run.
  const adaptive = copiesBitEqual ? wbGuesses : await whitebox(averageCopies(copies));
  const attacks = {
    nearest: score(nearestAttack(received, pub.clean)),
    whitebox: score(wbGuesses),
    learned: score(decode(trainDecoder(defended), received)),
    adaptive: score(adaptive),
    ...(device.sanitising
      ? { informed: score(posteriorDecoder(device.sanitising.mechanism, concat(pub.rows), [...device.sanitising.sources, ...pub.vocabulary])(wbGuesses)) }
      : {}),
  };
  const noisy = device.setting.kind === 'output' && device.setting.defence.mechanism !== 'none';
  const adaptiveFreshNoise = noisy ? score(await whitebox(averageCopies(await collectCopies(device, prefix, victims, key, o.copies, d)))) : undefined;
  const [name, best] = Object.entries(attacks).reduce((a, b) => (b[1].recovery > a[1].recovery ? b : a));
  return {
    setting: describeSetting(device.setting),
    clip: device.clip,
    attacks,
    ...(adaptiveFreshNoise ? { adaptiveFreshNoise } : {}),
    copiesBitEqual,
    strongest: { attack: name, recovery: best.recovery, majority: best.majority, rowsHalf: best.rowsHalf },
  };
}

const concat = (rows: Int32Array[]) => Int32Array.from(rows.flatMap((r) => Array.from(r)));

/** Each real position's hidden state with its token (start tokens included: public, and a candidate like any). */
function referenceOf(batch: Batch, hidden: Float32Array, d: number): Reference {
  const vectors: number[] = [];
  const tokens: number[] = [];
  for (let p = 0; p < batch.ids.length; p++) {
    if (!batch.mask[p]) continue;
    tokens.push(batch.ids[p]);
    for (let k = 0; k < d; k++) vectors.push(hidden[p * d + k]);
  }
  return { vectors: Float32Array.from(vectors), tokens: Int32Array.from(tokens), d };
}

/**
 * `count` uploads of the same rows as a server can ask for them: each row alone, in reverse order with more padding,
 * in the original batch; realigned to the victims' layout.
 */
async function collectCopies(device: DeviceSide, prefix: PrefixRun, victims: Batch, key: () => Uint8Array, count: number, d: number): Promise<Activations[]> {
  const { rows, seq } = victims;
  const out: Activations[] = [];
  for (let c = 0; c < count; c++) {
    const hidden = new Float32Array(rows * seq * d);
    const k = key();
    const layout = c % 3;
    if (layout === 0) hidden.set(await upload(device, prefix, victims, k));
    else if (layout === 1) {
      for (let r = 0; r < rows; r++) {
        const length = rowLength(victims.mask, r, seq);
        const alone = { ids: victims.ids.slice(r * seq, r * seq + length), mask: victims.mask.slice(r * seq, r * seq + length), rows: 1, seq: length };
        hidden.set(await upload(device, prefix, alone, k), r * seq * d);
      }
    } else {
      const wide = seq + 8;
      const ids = new Int32Array(rows * wide);
      const mask = new Int32Array(rows * wide);
      for (let r = 0; r < rows; r++) {
        ids.set(victims.ids.subarray(r * seq, (r + 1) * seq), (rows - 1 - r) * wide);
        mask.set(victims.mask.subarray(r * seq, (r + 1) * seq), (rows - 1 - r) * wide);
      }
      const got = await upload(device, prefix, { ids, mask, rows, seq: wide }, k);
      for (let r = 0; r < rows; r++) hidden.set(got.subarray((rows - 1 - r) * wide * d, ((rows - 1 - r) * wide + seq) * d), r * seq * d);
    }
    out.push({ hidden, mask: victims.mask, rows, seq, d });
  }
  return out;
}

/**
 * The whole suite for one model and cut under each setting, from texts (GPT-2's BPE by default): one prefix, one
 * public reference. `publicTexts`: all the public text (groups are built from it), the attacker's texts by default.
 */
export async function privacyReport(
  model: Model,
  cut: number,
  settings: readonly DeviceSetting[],
  attackerTexts: readonly TextInput[],
  victimTexts: readonly TextInput[],
  {
    seqLen = 48,
    tokenizer = new GPT2Tokenizer() as Tokenizer,
    copies = 6,
    shortlist = 64,
    keys,
    publicTexts = attackerTexts,
  }: { seqLen?: number; tokenizer?: Tokenizer; keys?: () => Uint8Array; publicTexts?: readonly TextInput[] } & Partial<SuiteOptions> = {},
): Promise<SuiteResult[]> {
  const prefix = await ortPrefix(model, cut);
  try {
    const encoded = encodeTexts(tokenizer, attackerTexts, seqLen);
    const more = publicTexts === attackerTexts ? encoded : encodeTexts(tokenizer, publicTexts, seqLen);
    const pub = await publicText(prefix.run, tokenizer, encoded, model.config.nEmbd, more);
    const victims = encodeTexts(tokenizer, victimTexts, seqLen);
    const out: SuiteResult[] = [];
    for (const setting of settings)
      out.push(
        await attackSuite(model, prefix.run, await deviceSide(model, prefix, setting, tokenizer, pub), tokenizer, pub, victims, {
          copies,
          shortlist,
          keys,
        }),
      );
    return out;
  } finally {
    await prefix.release();
  }
}

export const percent = (x: number) => `${(100 * x).toFixed(1)}%`;
