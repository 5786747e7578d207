/**
 * The randomness of a device's defence, derived instead of drawn. A row's noise (or sanitised token) at position p is
 * a function of the device's secret, the context (segment and setting) and the row's tokens 0..p: exactly what the
 * hidden state at p depends on in a causal model. So the same hidden state gets the same noise whenever it is
 * uploaded again, in any run, batch or sequence length, and averaging copies gains a curious server nothing; and two
 * different hidden states never share noise (differences of copies would cancel it).
 */
import { chacha20 } from '@noble/ciphers/chacha.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';

const utf8 = (s: string) => new TextEncoder().encode(s);

/** The device's key for its defence's randomness: HKDF-SHA256 of its secret, so the secret itself is never reused raw. */
export function defenceKey(secret: string | Uint8Array): Uint8Array {
  const ikm = typeof secret === 'string' ? utf8(secret) : secret;
  if (ikm.length < 16) throw new Error('defence key: the device secret must hold at least 16 bytes');
  return hkdf(sha256, ikm, utf8('splitfrozen'), utf8('defence randomness v1'), 32);
}

/**
 * One seed per position 0..length-1 of a row: a keyed hash chain over its tokens, seed_p = HMAC(key, seed_{p-1} ||
 * token_p) from seed_-1 = HMAC(key, context). Each seed is a pseudorandom function of (context, tokens 0..p).
 */
export function positionSeeds(key: Uint8Array, context: Uint8Array, ids: ArrayLike<number>, length: number): Uint8Array[] {
  const seeds: Uint8Array[] = [];
  let chain = hmac(sha256, key, context);
  const link = new Uint8Array(36);
  const view = new DataView(link.buffer);
  for (let p = 0; p < length; p++) {
    link.set(chain, 0);
    view.setInt32(32, ids[p], true);
    chain = hmac(sha256, key, link);
    seeds.push(chain);
  }
  return seeds;
}

/**
 * Uniform and normal draws from ChaCha20's keystream under the device key, a seed's first 12 bytes as nonce. One
 * stream serves every position of a batch (reset per seed): its buffers are made once.
 */
export class SeededStream {
  private readonly zeros: Uint8Array;
  private readonly bytes: Uint8Array;
  private readonly words: Uint32Array;
  private next = 0;

  constructor(
    private readonly key: Uint8Array,
    /** 32-bit draws per seed. */
    draws: number,
  ) {
    this.zeros = new Uint8Array(4 * draws);
    this.bytes = new Uint8Array(4 * draws);
    this.words = new Uint32Array(this.bytes.buffer);
  }

  /** Starts the draws of one seed. */
  reset(seed: Uint8Array): this {
    chacha20(this.key, seed.subarray(0, 12), this.zeros, this.bytes);
    this.next = 0;
    return this;
  }

  /** Uniform in (0, 1): never 0, so its log is finite. */
  uniform(): number {
    if (this.next >= this.words.length) throw new Error(`seeded stream: more than the ${this.words.length} draws asked for`);
    return (this.words[this.next++] + 0.5) / 4294967296;
  }

  /** Fills `out` with standard normals (Box-Muller: one uniform a normal, rounded up to even). */
  normals(out: Float64Array): Float64Array {
    for (let i = 0; i < out.length; i += 2) {
      const r = Math.sqrt(-2 * Math.log(this.uniform()));
      const t = 2 * Math.PI * this.uniform();
      out[i] = r * Math.cos(t);
      if (i + 1 < out.length) out[i + 1] = r * Math.sin(t);
    }
    return out;
  }
}
