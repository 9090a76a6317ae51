/**
 * The slices of `@supabase/supabase-js` the Supabase tiers use, as structural types, so that any client version
 * with the same shape works and strategies can be unit-tested with a hand-written fake.
 *
 * @remarks
 * A real `SupabaseClient` satisfies {@link SupabaseLike}; the test `test/strategies/supabaseLike.test-d.ts`
 * proves it for the pinned version.
 */

/** The error object PostgREST (through postgrest-js) reports. */
export interface PostgrestErrorLike {
  readonly message: string;
  readonly code?: string;
  readonly details?: string | null;
  readonly hint?: string | null;
}

/** What `supabase.rpc()` resolves to. */
export interface RpcResponseLike {
  readonly data: unknown;
  readonly error: PostgrestErrorLike | null;
  readonly status: number;
}

/** A Realtime broadcast message as channel callbacks receive it. */
export interface BroadcastMessageLike {
  readonly event: string;
  readonly payload?: unknown;
  readonly [key: string]: unknown;
}

/** A `postgres_changes` payload as channel callbacks receive it. */
export interface PostgresChangePayloadLike {
  readonly eventType: string;
  readonly new: unknown;
  readonly [key: string]: unknown;
}

/** One tracked presence as channel callbacks and `presenceState()` report it (`phx_ref` renamed). */
export interface PresenceMetaLike {
  /** Unique per tracked meta (the server's `phx_ref`). */
  readonly presence_ref: string;
  readonly [key: string]: unknown;
}

/** Payload of a presence `join` callback: metas that appeared under `key`. */
export interface PresenceJoinPayloadLike {
  readonly key: string;
  readonly newPresences: readonly PresenceMetaLike[];
}

/** Payload of a presence `leave` callback: metas that disappeared from `key`. */
export interface PresenceLeavePayloadLike {
  readonly key: string;
  readonly leftPresences: readonly PresenceMetaLike[];
}

/** What `track()`, `untrack()` and `send()` resolve to: `'ok'`, `'timed out'` or `'error'`. */
export type ChannelSendResultLike = string;

/** Subscription statuses reported by `channel.subscribe(callback)`. */
export type ChannelStatus = 'SUBSCRIBED' | 'TIMED_OUT' | 'CLOSED' | 'CHANNEL_ERROR';

/** The subset of a Realtime channel the strategies use. */
export interface RealtimeChannelLike {
  on(
    type: 'broadcast',
    filter: { event: string },
    callback: (message: BroadcastMessageLike) => void,
  ): RealtimeChannelLike;
  on(
    type: 'postgres_changes',
    filter: { event: 'INSERT'; schema: string; table: string; filter: string },
    callback: (payload: PostgresChangePayloadLike) => void,
  ): RealtimeChannelLike;
  on(
    type: 'system',
    filter: Record<string, never>,
    callback: (payload: unknown) => void,
  ): RealtimeChannelLike;
  on(type: 'presence', filter: { event: 'sync' }, callback: () => void): RealtimeChannelLike;
  on(
    type: 'presence',
    filter: { event: 'join' },
    callback: (payload: PresenceJoinPayloadLike) => void,
  ): RealtimeChannelLike;
  on(
    type: 'presence',
    filter: { event: 'leave' },
    callback: (payload: PresenceLeavePayloadLike) => void,
  ): RealtimeChannelLike;
  subscribe(callback: (status: `${ChannelStatus}`, error?: Error) => void): RealtimeChannelLike;
  /** Make this client visible in the channel's presence with `payload` (one meta per channel). */
  track(payload: Record<string, unknown>): Promise<ChannelSendResultLike>;
  /** Remove this client's presence from the channel. */
  untrack(): Promise<ChannelSendResultLike>;
  /** The channel's current presence state, keyed by presence key. */
  presenceState(): Record<string, readonly PresenceMetaLike[]>;
  /** Send a broadcast to the channel's other members. */
  send(message: {
    type: 'broadcast';
    event: string;
    payload: Record<string, unknown>;
  }): Promise<ChannelSendResultLike>;
}

/** Options accepted by `supabase.channel()` that the strategies set. */
export interface ChannelOptionsLike {
  readonly config: {
    readonly private?: boolean;
    /** `key` `''` lets the server pick a unique key per join; `enabled` to receive presence. */
    readonly presence?: { readonly key?: string; readonly enabled?: boolean };
    readonly broadcast?: { readonly self?: boolean; readonly ack?: boolean };
  };
}

/**
 * The part of a Supabase client the Supabase tiers need: RPCs and Realtime channels (broadcast,
 * `postgres_changes` and presence).
 *
 * @example
 * ```ts
 * import { createClient } from '@supabase/supabase-js';
 * const supabase = createClient(url, anonKey); // satisfies SupabaseLike
 * ```
 */
export interface SupabaseLike {
  rpc(fn: string, args?: Record<string, unknown>): PromiseLike<RpcResponseLike>;
  channel(name: string, options?: ChannelOptionsLike): RealtimeChannelLike;
  removeChannel(channel: RealtimeChannelLike): Promise<unknown>;
}
