import type { Clock } from '../../core/environment';
import { MatchmakingError, MatchmakingErrorCode } from '../../core/errors';
import type { StrategyWarning } from '../../core/MatchmakingStrategy';

/**
 * The Supabase Realtime limits the presence tiers can run into, project-wide. Rates are what Supabase averages
 * over about 60 s.
 */
export interface PresenceQuotaLimits {
  /** Presence events per second: every `presence_state` sent, every track, every `presence_diff` delivered. */
  readonly presenceEventsPerSecond: number;
  /** Messages per second: broadcasts sent plus every broadcast delivered (match notifications count here). */
  readonly messagesPerSecond: number;
  /** Channel joins per second. */
  readonly joinsPerSecond: number;
  /** Concurrent Realtime connections (one per searching client). */
  readonly concurrentConnections: number;
}

/**
 * Limits of Supabase's plans, from https://supabase.com/docs/guides/realtime/limits (`team` also stands for
 * "Pro without spend cap" and Enterprise's floor).
 */
export const PRESENCE_PLAN_LIMITS = Object.freeze({
  free: Object.freeze({
    presenceEventsPerSecond: 20,
    messagesPerSecond: 100,
    joinsPerSecond: 100,
    concurrentConnections: 200,
  }),
  pro: Object.freeze({
    presenceEventsPerSecond: 50,
    messagesPerSecond: 500,
    joinsPerSecond: 500,
    concurrentConnections: 500,
  }),
  team: Object.freeze({
    presenceEventsPerSecond: 1000,
    messagesPerSecond: 2500,
    joinsPerSecond: 2500,
    concurrentConnections: 10_000,
  }),
}) satisfies Readonly<Record<string, PresenceQuotaLimits>>;

/** A plan name of {@link PRESENCE_PLAN_LIMITS}. */
export type PresencePlan = keyof typeof PRESENCE_PLAN_LIMITS;

/**
 * What the guard does once an estimate reaches `warnAt` of a limit.
 * - `warn`: emit a `warning` event only.
 * - `backoff`: also hold new searches (and shard moves) until the estimate falls back, at most `maxBackoffMs`,
 *   then refuse them.
 * - `refuse`: also refuse new searches at once with a `rate_limited` error.
 */
export type QuotaAction = 'warn' | 'backoff' | 'refuse';

/** Options of the quota guard (`quota` option of the presence strategies). */
export interface QuotaGuardOptions {
  /** A plan preset; `limits` override single values. @defaultValue no limits (nothing to guard) */
  readonly plan?: PresencePlan;
  /** Explicit limits (unset ones come from `plan`, else are unlimited). */
  readonly limits?: Partial<PresenceQuotaLimits>;
  /** Fraction of a limit at which the guard acts. @defaultValue 0.8 */
  readonly warnAt?: number;
  /** @defaultValue 'warn' */
  readonly onExceed?: QuotaAction;
  /** Longest a `backoff` guard holds a new search before refusing it. @defaultValue 30000 */
  readonly maxBackoffMs?: number;
  /** Averaging window, as Supabase's. @defaultValue 60000 */
  readonly windowMs?: number;
  /** The same warning code is not repeated sooner than this. @defaultValue 30000 */
  readonly warningIntervalMs?: number;
}

/** Codes of the guard's warnings (`warning` event `code`). */
export const QuotaWarningCode = {
  /** Presence events (state, tracks, diff deliveries) approach the plan's presence messages per second. */
  PresenceRate: 'quota_presence_rate',
  /** Broadcast traffic (match notifications) approaches the plan's messages per second. */
  MessageRate: 'quota_message_rate',
  /** Channel joins approach the plan's joins per second. */
  JoinRate: 'quota_join_rate',
  /** Searchers (one connection each) approach the plan's concurrent connections. */
  Connections: 'quota_connections',
  /** A track/untrack had to wait: the next would have exceeded 5 per channel per 30 s. */
  ClientPresence: 'quota_client_presence',
} as const;

/** Union of {@link QuotaWarningCode} values. */
export type QuotaWarningCode = (typeof QuotaWarningCode)[keyof typeof QuotaWarningCode];

/** The guard's current view of the project's Realtime load, per second unless named otherwise. */
export interface QuotaEstimate {
  readonly presenceEventsPerSecond: number;
  readonly messagesPerSecond: number;
  readonly joinsPerSecond: number;
  readonly concurrentConnections: number;
  /** Searchers seen in the current channel (shard). */
  readonly channelSize: number;
  /** Tracks (searchers arriving) and leaves seen per second in the observed channel. */
  readonly tracksPerSecond: number;
  readonly leavesPerSecond: number;
  /** Channels the load is spread over (1, or the shard count); observed figures are scaled by it. */
  readonly scale: number;
  /** Whether the presence figure comes from counted events or from the arrival rate and channel size. */
  readonly presenceBasis: 'observed' | 'predicted';
}

/**
 * Presence events one match costs in a channel of `channelSize` searchers: two tracks and two leaves delivered
 * to everyone, plus each track and each joiner's `presence_state`: `4N + 4`.
 */
export function presenceEventsPerMatch(channelSize: number): number {
  return 4 * channelSize + 4;
}

/**
 * The highest sustained match rate a plan allows for a presence tier, from the formulas in
 * `docs/presence-capacity.md`: presence `P / (4N/S + 4)`, messages `M / 4` (two notifications, each sent and
 * delivered), joins `J / 4` (two channels per searcher, two searchers per match); zero when the searchers alone
 * exceed the connection limit.
 *
 * @param searchers - Concurrent searchers N (all shards together).
 * @param shards - Channels S they are spread over (1 for the single-channel tier).
 */
export function maxMatchesPerSecond(limits: PresenceQuotaLimits, searchers: number, shards = 1): number {
  if (searchers > limits.concurrentConnections) return 0;
  const perChannel = searchers / Math.max(1, shards);
  return Math.min(
    limits.presenceEventsPerSecond / presenceEventsPerMatch(perChannel),
    limits.messagesPerSecond / 4,
    limits.joinsPerSecond / 4,
  );
}

const UNLIMITED: PresenceQuotaLimits = Object.freeze({
  presenceEventsPerSecond: Number.POSITIVE_INFINITY,
  messagesPerSecond: Number.POSITIVE_INFINITY,
  joinsPerSecond: Number.POSITIVE_INFINITY,
  concurrentConnections: Number.POSITIVE_INFINITY,
});

const ACTIONS: readonly QuotaAction[] = ['warn', 'backoff', 'refuse'];
const MIN_SPAN_MS = 5000;

function invalid(message: string): MatchmakingError {
  return new MatchmakingError(MatchmakingErrorCode.InvalidConfig, message, { details: { field: 'quota' } });
}

/** Per-second buckets over the window. */
class SlidingCounter {
  readonly #counts: number[];
  readonly #stamps: number[];

  constructor(readonly size: number) {
    this.#counts = new Array<number>(size).fill(0);
    this.#stamps = new Array<number>(size).fill(-1);
  }

  add(second: number, n: number): void {
    const slot = second % this.size;
    if (this.#stamps[slot] !== second) {
      this.#stamps[slot] = second;
      this.#counts[slot] = 0;
    }
    this.#counts[slot] = (this.#counts[slot] as number) + n;
  }

  /** Sum over seconds in [from, to]. */
  sum(from: number, to: number): number {
    let total = 0;
    for (let slot = 0; slot < this.size; slot += 1) {
      const stamp = this.#stamps[slot] as number;
      if (stamp >= from && stamp <= to) total += this.#counts[slot] as number;
    }
    return total;
  }

  clear(): void {
    this.#stamps.fill(-1);
  }
}

/**
 * Estimates the project's Realtime load from what one presence client sees, and decides whether the presence
 * tiers should warn, hold or refuse new searches before Supabase stops channels.
 *
 * @remarks
 * The client counts the presence events its channel generates (each track: 1 + the members it reaches; each
 * leave: the members left; each own join: 1 `presence_state`), averaged over the window (at least 5 s, like the
 * server's first bucket), and also predicts the steady state from the arrival rate and the channel size,
 * `tracks/s x (2N + 2)`. The larger of the two counts, times `scale` (the shard count: a client sees one shard
 * and assumes the others look alike). It cannot see other apps' traffic on the same project; lower `warnAt` or
 * the limits to leave room for them.
 *
 * @example
 * ```ts
 * createMatchmaker({ strategy: 'presence', supabase, quota: { plan: 'free', onExceed: 'refuse' } });
 * ```
 */
export class QuotaGuard {
  readonly limits: PresenceQuotaLimits;
  readonly warnAt: number;
  readonly action: QuotaAction;
  readonly maxBackoffMs: number;
  readonly plan: PresencePlan | undefined;
  readonly #clock: Clock;
  readonly #scale: number;
  readonly #windowMs: number;
  readonly #warningIntervalMs: number;
  readonly #presence: SlidingCounter;
  readonly #tracks: SlidingCounter;
  readonly #leaves: SlidingCounter;
  readonly #lastWarned = new Map<string, number>();
  #streakStart: number | undefined;
  #lastObserved = Number.NEGATIVE_INFINITY;
  #channelSize = 0;

  constructor(options: QuotaGuardOptions | PresencePlan, clock: Clock, scale = 1) {
    const o: QuotaGuardOptions = typeof options === 'string' ? { plan: options } : (options ?? {});
    if (o.plan !== undefined && !Object.hasOwn(PRESENCE_PLAN_LIMITS, o.plan)) {
      throw invalid(
        `quota.plan must be one of ${Object.keys(PRESENCE_PLAN_LIMITS)
          .map((p) => `'${p}'`)
          .join(', ')}; got ${JSON.stringify(o.plan)}.`,
      );
    }
    const warnAt = o.warnAt ?? 0.8;
    if (!(warnAt > 0 && warnAt <= 1))
      throw invalid(`quota.warnAt must be in (0, 1]; got ${String(o.warnAt)}.`);
    const action = o.onExceed ?? 'warn';
    if (!ACTIONS.includes(action)) {
      throw invalid(
        `quota.onExceed must be 'warn', 'backoff' or 'refuse'; got ${JSON.stringify(o.onExceed)}.`,
      );
    }
    const windowMs = o.windowMs ?? 60_000;
    if (!(windowMs >= MIN_SPAN_MS && windowMs <= 600_000)) {
      throw invalid(`quota.windowMs must be between ${MIN_SPAN_MS} and 600000; got ${String(o.windowMs)}.`);
    }
    const base = o.plan === undefined ? UNLIMITED : PRESENCE_PLAN_LIMITS[o.plan];
    this.limits = Object.freeze({ ...base, ...o.limits });
    for (const [key, value] of Object.entries(this.limits)) {
      if (!(typeof value === 'number' && value > 0))
        throw invalid(`quota.limits.${key} must be a positive number.`);
    }
    this.warnAt = warnAt;
    this.action = action;
    this.maxBackoffMs = o.maxBackoffMs ?? 30_000;
    this.plan = o.plan;
    this.#clock = clock;
    this.#scale = Math.max(1, scale);
    this.#windowMs = windowMs;
    this.#warningIntervalMs = o.warningIntervalMs ?? 30_000;
    const seconds = Math.ceil(windowMs / 1000) + 1;
    this.#presence = new SlidingCounter(seconds);
    this.#tracks = new SlidingCounter(seconds);
    this.#leaves = new SlidingCounter(seconds);
  }

  /** A channel was joined: the client receives `presence_state` (one presence event) and starts observing. */
  recordJoin(channelSize: number): void {
    this.#begin();
    this.#channelSize = channelSize;
    this.#count(this.#presence, 1);
  }

  /** A searcher tracked in the observed channel, which now has `channelSize` members. */
  recordTrack(channelSize: number): void {
    this.#begin();
    this.#channelSize = channelSize;
    this.#count(this.#presence, 1 + channelSize);
    this.#count(this.#tracks, 1);
  }

  /** A searcher left the observed channel, which now has `channelSize` members. */
  recordLeave(channelSize: number): void {
    this.#begin();
    this.#channelSize = channelSize;
    this.#count(this.#presence, channelSize);
    this.#count(this.#leaves, 1);
  }

  /** The current estimate of the project's load. */
  estimate(): QuotaEstimate {
    const now = this.#clock.now();
    const start = Math.max(now - this.#windowMs, this.#streakStart ?? now);
    const spanMs = Math.min(this.#windowMs, Math.max(MIN_SPAN_MS, now - start));
    const from = Math.floor(start / 1000);
    const to = Math.floor(now / 1000);
    const perSecond = (counter: SlidingCounter) => (counter.sum(from, to) * 1000) / spanMs;
    const tracks = perSecond(this.#tracks);
    const leaves = perSecond(this.#leaves);
    const observed = perSecond(this.#presence) * this.#scale;
    const predicted = tracks * (2 * this.#channelSize + 2) * this.#scale;
    return {
      presenceEventsPerSecond: Math.max(observed, predicted),
      messagesPerSecond: (leaves / 2) * 4 * this.#scale,
      joinsPerSecond: tracks * 2 * this.#scale,
      concurrentConnections: this.#channelSize * this.#scale,
      channelSize: this.#channelSize,
      tracksPerSecond: tracks,
      leavesPerSecond: leaves,
      scale: this.#scale,
      presenceBasis: predicted > observed ? 'predicted' : 'observed',
    };
  }

  /** Every metric at or over `warnAt` of its limit, worst first. */
  pressing(): StrategyWarning[] {
    const estimate = this.estimate();
    const metrics: [QuotaWarningCode, keyof PresenceQuotaLimits, string][] = [
      [QuotaWarningCode.PresenceRate, 'presenceEventsPerSecond', 'presence events/s'],
      [QuotaWarningCode.MessageRate, 'messagesPerSecond', 'messages/s'],
      [QuotaWarningCode.JoinRate, 'joinsPerSecond', 'channel joins/s'],
      [QuotaWarningCode.Connections, 'concurrentConnections', 'concurrent connections'],
    ];
    const out: { fraction: number; warning: StrategyWarning }[] = [];
    for (const [code, key, unit] of metrics) {
      const limit = this.limits[key];
      const value = estimate[key];
      if (!Number.isFinite(limit) || value < this.warnAt * limit) continue;
      const fraction = value / limit;
      out.push({
        fraction,
        warning: {
          code,
          message:
            `Estimated ${Math.round(value * 10) / 10} ${unit} against a limit of ${limit}` +
            `${this.plan ? ` (${this.plan} plan)` : ''}: ${Math.round(fraction * 100)}%. Supabase stops Realtime ` +
            'channels above the limit. Slow down searches, spread them over more shards, or move to the queue tier ' +
            '(see docs/presence-capacity.md).',
          details: {
            metric: key,
            estimate: value,
            limit,
            fraction,
            warnAt: this.warnAt,
            plan: this.plan ?? null,
            action: this.action,
            channelSize: estimate.channelSize,
            tracksPerSecond: estimate.tracksPerSecond,
            leavesPerSecond: estimate.leavesPerSecond,
            scale: estimate.scale,
            presenceBasis: estimate.presenceBasis,
          },
        },
      });
    }
    return out.sort((a, b) => b.fraction - a.fraction).map((entry) => entry.warning);
  }

  /** Warnings due now: pressing ones whose code was not reported within `warningIntervalMs`. */
  due(): StrategyWarning[] {
    const now = this.#clock.now();
    const out: StrategyWarning[] = [];
    for (const warning of this.pressing()) {
      const last = this.#lastWarned.get(warning.code);
      if (last !== undefined && now - last < this.#warningIntervalMs) continue;
      this.#lastWarned.set(warning.code, now);
      out.push(warning);
    }
    return out;
  }

  #begin(): void {
    const now = this.#clock.now();
    if (this.#streakStart === undefined || now - this.#lastObserved > this.#windowMs) {
      // Nothing seen for a whole window: what we knew says nothing about now.
      this.#presence.clear();
      this.#tracks.clear();
      this.#leaves.clear();
      this.#streakStart = now;
    }
    this.#lastObserved = now;
  }

  #count(counter: SlidingCounter, n: number): void {
    counter.add(Math.floor(this.#clock.now() / 1000), n);
  }
}

/**
 * Counts one channel's track/untrack calls and says how long the next must wait to stay within the server's
 * client presence limit (5 per 30 s per channel by default; the 6th closes the channel).
 *
 * @internal
 */
export class PresenceCallLimiter {
  readonly #calls: number[] = [];

  constructor(
    readonly maxCalls = 5,
    readonly windowMs = 30_000,
  ) {}

  /** Milliseconds to wait before the next call is allowed (0: now). */
  waitMs(now: number): number {
    this.#prune(now);
    if (this.#calls.length < this.maxCalls) return 0;
    // A small margin over the window, because the server opens its window at its own first call.
    return Math.max(0, (this.#calls[0] as number) + this.windowMs + 50 - now);
  }

  /** Record a call made at `now`. */
  record(now: number): void {
    this.#prune(now);
    this.#calls.push(now);
  }

  /** A new server-side channel (rejoin): its counter starts over. */
  reset(): void {
    this.#calls.length = 0;
  }

  #prune(now: number): void {
    while (this.#calls.length > 0 && (this.#calls[0] as number) + this.windowMs + 50 <= now)
      this.#calls.shift();
  }
}
