/**
 * Retries with exponential backoff, for calls that fail in passing (storage, the network): one helper for the server's
 * poller and the device's uploads.
 */
export interface RetryOptions {
  /** Tries in all, and the first retry's delay (doubling after it). */
  attempts: number;
  backoffMs: number;
  /** An error that trying again would only repeat (an object too large, a redirect): thrown at once. */
  permanent?: (e: unknown) => boolean;
  /** Called with each failed try. */
  onFailure?: (attempt: number, e: unknown) => void;
}

/** `fn`, tried until it succeeds or `attempts` are spent; the last error is thrown. */
export async function withRetries<T>(fn: () => Promise<T>, { attempts, backoffMs, permanent = () => false, onFailure }: RetryOptions): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (permanent(e)) throw e;
      onFailure?.(attempt, e);
      if (attempt >= attempts) throw e;
      await new Promise((resolve) => setTimeout(resolve, backoffMs * 2 ** (attempt - 1)));
    }
  }
}
