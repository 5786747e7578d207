/** PUT through a presigned URL, retried with exponential backoff; every failed attempt is reported. */
export async function putWithRetry(
  url: string,
  body: Uint8Array | string,
  { attempts, backoffMs, onFailure }: { attempts: number; backoffMs: number; onFailure: (attempt: number, reason: string) => void },
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    let reason: string;
    try {
      const res = await fetch(url, { method: 'PUT', body });
      if (res.ok) return;
      reason = `HTTP ${res.status}`;
    } catch (e) {
      reason = (e as Error).message;
    }
    onFailure(attempt, reason);
    if (attempt >= attempts) throw new Error(`failed after ${attempts} attempts: ${reason}`);
    await new Promise((resolve) => setTimeout(resolve, backoffMs * 2 ** (attempt - 1)));
  }
}
