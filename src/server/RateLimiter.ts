/** A token-bucket limit: `burst` at once, refilled at `perSecond`. */
export interface RateLimit {
  /** Sustained rate. */
  readonly perSecond: number;
  /** Bucket size (how many may come at once). */
  readonly burst: number;
}

interface Bucket {
  tokens: number;
  updatedAt: number;
}

/**
 * Per-key token buckets (the server keys them by user id, so a user's joins are limited across all of their
 * connections on a node). Idle buckets are forgotten by {@link prune}.
 */
export class RateLimiter {
  readonly #limit: RateLimit;
  readonly #buckets = new Map<string, Bucket>();

  constructor(limit: RateLimit) {
    this.#limit = limit;
  }

  /** Take one token for `key`; false when the bucket is empty (the request must be refused). */
  take(key: string, nowMs: number): boolean {
    const { perSecond, burst } = this.#limit;
    const bucket = this.#buckets.get(key) ?? { tokens: burst, updatedAt: nowMs };
    bucket.tokens = Math.min(burst, bucket.tokens + ((nowMs - bucket.updatedAt) / 1000) * perSecond);
    bucket.updatedAt = nowMs;
    this.#buckets.set(key, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /** Forget buckets that have refilled completely (they behave exactly like a new one). */
  prune(nowMs: number): void {
    const { perSecond, burst } = this.#limit;
    for (const [key, bucket] of this.#buckets) {
      if (bucket.tokens + ((nowMs - bucket.updatedAt) / 1000) * perSecond >= burst) this.#buckets.delete(key);
    }
  }

  /** Number of tracked keys. */
  get size(): number {
    return this.#buckets.size;
  }
}
