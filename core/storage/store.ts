/**
 * Object storage as the system uses it: a handful of operations over one bucket. One implementation speaks the S3
 * API (core/storage/s3.ts) and serves AWS S3, Cloudflare R2's S3 endpoint, MinIO and the local embedded server; every
 * implementation passes the same conformance suite (core/storage/conformance.ts).
 */
export interface ObjectInfo {
  key: string;
  size: number;
}

export interface GetOptions {
  maxBytes?: number;
}

export interface ObjectStore {
  put(key: string, body: Uint8Array | string, contentType?: string): Promise<void>;
  /**
   * The object's bytes, or undefined when there is none. With `maxBytes`, a larger object is not read: the download
   * stops there and ObjectTooLarge is thrown (what anyone who can write the key could swap in is bounded).
   */
  get(key: string, options?: GetOptions): Promise<Uint8Array | undefined>;
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Keys under a prefix in lexicographic order, after `startAfter` when given, across as many pages as needed. */
  list(prefix: string, startAfter?: string): AsyncIterable<ObjectInfo>;
  delete(key: string): Promise<void>;
  /** A URL that lets its holder PUT this one key, and nothing else, until it expires. */
  presignPut(key: string, expiresInSeconds: number): Promise<string>;
  presignGet(key: string, expiresInSeconds: number): Promise<string>;
}

export class StorageError extends Error {
  constructor(operation: string, key: string, cause: unknown) {
    super(`storage ${operation} '${key}' failed: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = 'StorageError';
  }
}

/** An object larger than its reader allows: not retried, since the same object stays too large. */
export class ObjectTooLarge extends Error {
  constructor(
    readonly key: string,
    readonly maxBytes: number,
    size?: number,
  ) {
    super(`object '${key}' is ${size === undefined ? 'larger than' : `${size} bytes, more than`} the ${maxBytes} bytes allowed: not downloaded`);
    this.name = 'ObjectTooLarge';
  }
}
