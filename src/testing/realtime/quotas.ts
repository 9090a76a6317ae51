/**
 * Per-plan limits of Supabase Realtime, enforced by the local Realtime server the way the real server
 * enforces them (see the protocol spec, sections 2.3, 2.5, 3.4 and 7.4).
 *
 * @packageDocumentation
 */

/**
 * The tenant limits the local Realtime server enforces. `Infinity` disables a limit.
 *
 * Rates (`max*PerSecond`) are averages over the last minute, measured in 5 s buckets as the real server's
 * rate counters do, and are only re-evaluated at bucket boundaries.
 */
export interface RealtimeQuotas {
  /**
   * Sockets that have joined at least one channel. Connecting when at the limit answers HTTP 429
   * `Too many connected users`; a join from a new socket gets `ConnectionRateLimitReached`.
   */
  readonly maxConcurrentUsers: number;
  /**
   * Broadcasts sent plus every message delivered to a channel, per second. Over it, each channel that
   * receives its next message is stopped with `Too many messages per second`, and the REST broadcast
   * answers 429. Postgres changes have their own counter with the same limit; over it they are dropped.
   */
  readonly maxEventsPerSecond: number;
  /** Channel joins per second. Over it, joins fail with `ClientJoinRateLimitReached` and the socket closes (1001). */
  readonly maxJoinsPerSecond: number;
  /** Channels joined at once on one socket (`ChannelRateLimitReached: Too many channels`). */
  readonly maxChannelsPerClient: number;
  /**
   * Presence events per second: `presence_state` sends, tracks, and every `presence_diff` delivery.
   * Over it, syncs and tracks stop their channel with `Too many presence messages per second`.
   */
  readonly maxPresenceEventsPerSecond: number;
  /** Broadcast and track payload limit (`max_payload_size_in_kb`); the check allows 500 bytes of slack. */
  readonly maxPayloadSizeInKb: number;
  /** Track/untrack messages allowed per channel in one window (the next stops the channel). */
  readonly clientPresenceMaxCalls: number;
  /** Length of the client presence window in milliseconds. */
  readonly clientPresenceWindowMs: number;
}

const UNLIMITED: RealtimeQuotas = Object.freeze({
  maxConcurrentUsers: Number.POSITIVE_INFINITY,
  maxEventsPerSecond: Number.POSITIVE_INFINITY,
  maxJoinsPerSecond: Number.POSITIVE_INFINITY,
  maxChannelsPerClient: Number.POSITIVE_INFINITY,
  maxPresenceEventsPerSecond: Number.POSITIVE_INFINITY,
  maxPayloadSizeInKb: Number.POSITIVE_INFINITY,
  clientPresenceMaxCalls: Number.POSITIVE_INFINITY,
  clientPresenceWindowMs: 30_000,
});

/**
 * Quotas of Supabase's plans, from https://supabase.com/docs/guides/realtime/limits (`team` is also
 * "Pro without spend cap"), and `unlimited`, the local server's default.
 *
 * @example
 * ```ts
 * new RealtimeServer({ ...deps, quotas: { ...REALTIME_PLANS.free, maxChannelsPerClient: 3 } });
 * ```
 */
export const REALTIME_PLANS = Object.freeze({
  free: Object.freeze({
    maxConcurrentUsers: 200,
    maxEventsPerSecond: 100,
    maxJoinsPerSecond: 100,
    maxChannelsPerClient: 100,
    maxPresenceEventsPerSecond: 20,
    maxPayloadSizeInKb: 256,
    clientPresenceMaxCalls: 5,
    clientPresenceWindowMs: 30_000,
  }),
  pro: Object.freeze({
    maxConcurrentUsers: 500,
    maxEventsPerSecond: 500,
    maxJoinsPerSecond: 500,
    maxChannelsPerClient: 100,
    maxPresenceEventsPerSecond: 50,
    maxPayloadSizeInKb: 3000,
    clientPresenceMaxCalls: 5,
    clientPresenceWindowMs: 30_000,
  }),
  team: Object.freeze({
    maxConcurrentUsers: 10_000,
    maxEventsPerSecond: 2500,
    maxJoinsPerSecond: 2500,
    maxChannelsPerClient: 100,
    maxPresenceEventsPerSecond: 1000,
    maxPayloadSizeInKb: 3000,
    clientPresenceMaxCalls: 5,
    clientPresenceWindowMs: 30_000,
  }),
  unlimited: UNLIMITED,
}) satisfies Readonly<Record<string, RealtimeQuotas>>;

/** Fill the limits `quotas` leaves out with `unlimited` ones. */
export function resolveQuotas(quotas: Partial<RealtimeQuotas> | undefined): RealtimeQuotas {
  return Object.freeze({ ...UNLIMITED, ...quotas });
}
