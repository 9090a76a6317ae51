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
  subscribe(callback: (status: `${ChannelStatus}`, error?: Error) => void): RealtimeChannelLike;
}

/** Options accepted by `supabase.channel()` that the strategies set. */
export interface ChannelOptionsLike {
  readonly config: { readonly private?: boolean };
}

/**
 * The part of a Supabase client the queue tier needs: RPCs and Realtime channels.
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
