/**
 * A rolling rate counter modelled on the Realtime server's `Realtime.RateCounter`: events are counted into
 * the current bucket; every tick (5 s) the bucket is pushed into a list of at most 12 buckets and the
 * average per second over those buckets is recomputed. A limit trips when the average reaches it at a tick
 * and stays tripped until a later tick finds the average below it. Between ticks the average does not move,
 * so a burst is only noticed at the next bucket boundary, as on the real server.
 *
 * Time comes from an injected clock and ticks are computed lazily, so tests can drive it deterministically.
 *
 * @packageDocumentation
 */

/** Options of {@link RateCounter}. */
export interface RateCounterOptions {
  /** The average (per second) at which the limit trips. `Infinity` never trips. */
  readonly limit: number;
  /** Bucket length in milliseconds. @defaultValue 5000 */
  readonly tickMs?: number;
  /** Buckets kept for the average. @defaultValue 12 */
  readonly maxBuckets?: number;
  /** An idle counter (only empty buckets) is discarded after this long and restarts fresh. @defaultValue 600000 */
  readonly idleShutdownMs?: number;
}

/** A tenant-wide rolling average with a limit, as the Realtime server keeps for joins, events and presence. */
export class RateCounter {
  readonly #clock: () => number;
  readonly #limit: number;
  readonly #tickMs: number;
  readonly #maxBuckets: number;
  readonly #idleShutdownMs: number;
  #startedAt: number | undefined;
  #nextTick = 0;
  #pending = 0;
  #buckets: number[] = [];
  #avg = 0;
  #triggered = false;
  #lastActivity = 0;

  constructor(clock: () => number, options: RateCounterOptions) {
    this.#clock = clock;
    this.#limit = options.limit;
    this.#tickMs = options.tickMs ?? 5000;
    this.#maxBuckets = options.maxBuckets ?? 12;
    this.#idleShutdownMs = options.idleShutdownMs ?? 600_000;
  }

  /** The limit this counter trips at. */
  get limit(): number {
    return this.#limit;
  }

  /** Count `n` events in the current bucket. */
  add(n = 1): void {
    if (n <= 0) return;
    this.#advance();
    this.#pending += n;
    this.#lastActivity = this.#clock();
  }

  /** Average events per second over the kept buckets, as of the last tick. */
  get avg(): number {
    this.#advance();
    return this.#avg;
  }

  /** Whether the limit is tripped, as of the last tick. */
  get triggered(): boolean {
    this.#advance();
    return this.#triggered;
  }

  #start(now: number): void {
    this.#startedAt = now;
    this.#nextTick = now + this.#tickMs;
    this.#pending = 0;
    this.#buckets = [];
    this.#avg = 0;
    this.#triggered = false;
    this.#lastActivity = now;
  }

  #advance(): void {
    const now = this.#clock();
    if (this.#startedAt === undefined) {
      this.#start(now);
      return;
    }
    const idleFor = now - this.#lastActivity;
    if (this.#pending === 0 && idleFor >= this.#idleShutdownMs + this.#tickMs * this.#maxBuckets) {
      this.#start(now);
      return;
    }
    let ticks = 0;
    while (now >= this.#nextTick) {
      this.#tick();
      this.#nextTick += this.#tickMs;
      ticks += 1;
      if (ticks > this.#maxBuckets + 1 && now >= this.#nextTick) {
        // Every kept bucket is empty by now; further ticks change nothing but the schedule.
        this.#nextTick += (Math.floor((now - this.#nextTick) / this.#tickMs) + 1) * this.#tickMs;
        break;
      }
    }
  }

  #tick(): void {
    this.#buckets.unshift(this.#pending);
    this.#pending = 0;
    if (this.#buckets.length > this.#maxBuckets) this.#buckets.length = this.#maxBuckets;
    const sum = this.#buckets.reduce((total, count) => total + count, 0);
    this.#avg = sum / this.#buckets.length / (this.#tickMs / 1000);
    if (this.#triggered) {
      if (this.#avg < this.#limit) this.#triggered = false;
    } else if (this.#avg >= this.#limit) {
      this.#triggered = true;
    }
  }
}
