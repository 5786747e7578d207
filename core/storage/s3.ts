/** ObjectStore over the S3 API (@aws-sdk/client-s3): AWS S3, Cloudflare R2, MinIO, and the local s3rver. */
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { readUpTo } from '../streams/read-up-to.ts';
import { ObjectTooLarge, StorageError, type GetOptions, type ObjectInfo, type ObjectStore } from './store.ts';

export interface S3Config {
  bucket: string;
  /** Omit for AWS S3; e.g. https://<account>.r2.cloudflarestorage.com for R2, http://127.0.0.1:9000 for MinIO. */
  endpoint?: string;
  /** 'auto' for R2. */
  region?: string;
  /**
   * A static key: both or neither. Neither: the AWS SDK's default credential chain (AWS_ACCESS_KEY_ID,
   * AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN; AWS_PROFILE's shared files, SSO and web identity; container and
   * instance roles), which is where S3 users keep credentials.
   */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** With a temporary key. */
  sessionToken?: string;
  /** Path-style URLs (bucket in the path): needed by MinIO and the local server; on by default with an endpoint. */
  forcePathStyle?: boolean;
}

function isMissing(e: unknown): boolean {
  const err = e as { name?: string; $metadata?: { httpStatusCode?: number } };
  return err?.name === 'NoSuchKey' || err?.name === 'NotFound' || err?.$metadata?.httpStatusCode === 404;
}

export class S3Store implements ObjectStore {
  private readonly client: S3Client;
  readonly bucket: string;

  constructor(config: S3Config) {
    this.bucket = config.bucket;
    this.client = new S3Client({
      endpoint: config.endpoint,
      region: config.region ?? 'us-east-1',
      forcePathStyle: config.forcePathStyle ?? config.endpoint !== undefined,
      credentials:
        config.accessKeyId && config.secretAccessKey
          ? { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey, sessionToken: config.sessionToken }
          : undefined,
      // The SDK's default checksums frame streamed bodies as aws-chunked, which some servers store verbatim.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // Every call: 5xx answers, throttling and dropped connections are retried with the SDK's jittered backoff.
      maxAttempts: 5,
    });
  }

  private async call<T>(operation: string, key: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw new StorageError(operation, key, e);
    }
  }

  async put(key: string, body: Uint8Array | string, contentType = 'application/octet-stream'): Promise<void> {
    await this.call('put', key, () => this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentType: contentType })));
  }

  async get(key: string, { maxBytes = Infinity }: GetOptions = {}): Promise<Uint8Array | undefined> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      const stream = out.Body!.transformToWebStream();
      if (out.ContentLength !== undefined && out.ContentLength > maxBytes) {
        await stream.cancel();
        throw new ObjectTooLarge(key, maxBytes, out.ContentLength);
      }
      const bytes = await readUpTo(stream, maxBytes);
      if (!bytes) throw new ObjectTooLarge(key, maxBytes);
      // A body cut short after its headers promised all of it: a transfer fault, worth another try by the caller.
      if (out.ContentLength !== undefined && bytes.byteLength !== out.ContentLength)
        throw new Error(`body cut short: ${bytes.byteLength} of ${out.ContentLength} bytes`);
      return bytes;
    } catch (e) {
      if (e instanceof ObjectTooLarge) throw e;
      if (isMissing(e)) return undefined;
      throw new StorageError('get', key, e);
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { key, size: out.ContentLength ?? 0 };
    } catch (e) {
      if (isMissing(e)) return undefined;
      throw new StorageError('head', key, e);
    }
  }

  async *list(prefix: string, startAfter?: string): AsyncIterable<ObjectInfo> {
    // Pages continue with StartAfter = the last key seen rather than a ContinuationToken: the same incremental
    // position the poller keeps, and it works on servers whose continuation tokens do not.
    let after = startAfter;
    for (;;) {
      const page = await this.call('list', prefix, () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, StartAfter: after })),
      );
      const contents = page.Contents ?? [];
      for (const o of contents) yield { key: o.Key!, size: o.Size ?? 0 };
      if (!page.IsTruncated || contents.length === 0) return;
      after = contents[contents.length - 1].Key;
    }
  }

  async delete(key: string): Promise<void> {
    await this.call('delete', key, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })));
  }

  presignPut(key: string, expiresInSeconds: number): Promise<string> {
    return this.call('presign put', key, () =>
      getSignedUrl(this.client, new PutObjectCommand({ Bucket: this.bucket, Key: key }), { expiresIn: expiresInSeconds }),
    );
  }

  presignGet(key: string, expiresInSeconds: number): Promise<string> {
    return this.call('presign get', key, () =>
      getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: key }), { expiresIn: expiresInSeconds }),
    );
  }
}
