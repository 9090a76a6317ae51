import { type Environment, resolveEnvironment, type TimerHandle } from '../../core/environment';
import { MatchmakingError, MatchmakingErrorCode, toMatchmakingError } from '../../core/errors';
import type {
  CancelOutcome,
  MatchmakingStrategy,
  SearchOutcome,
  StrategyListener,
} from '../../core/MatchmakingStrategy';
import type { SearchInfo } from '../../core/types';
import type { RealtimeChannelLike, SupabaseLike } from '../supabaseLike';
import {
  decodeMatch,
  decodeState,
  endReason,
  QUEUE_RPC,
  type QueueState,
  type QueueStatus,
  rpcError,
  toMatchInfo,
} from './queueProtocol';

/**
 * How a waiting client learns that it was matched.
 * - `broadcast` (default): Broadcast from the Database on the private topic `matchmaker:user:<uid>`.
 * - `postgres_changes`: INSERTs into `matchmaker.ticket_history` filtered to the user.
 * - `poll`: no Realtime at all; the client polls (adaptively) through the heartbeat RPC.
 *
 * Realtime delivery is at most once, so the first two also reconcile through `matchmaker_state` after every
 * (re)subscribe, and every heartbeat answer is checked too: a match committed while the socket was down still
 * arrives.
 */
export type QueueNotifyMode = 'broadcast' | 'postgres_changes' | 'poll';

/** Adaptive polling for `notify: 'poll'`. */
export interface QueuePollOptions {
  /** First delay after joining. @defaultValue 1000 */
  readonly minIntervalMs?: number;
  /** Longest delay; also capped by the server's heartbeat interval. @defaultValue 10000 */
  readonly maxIntervalMs?: number;
  /** Each empty poll multiplies the delay by this. @defaultValue 1.5 */
  readonly backoff?: number;
}

/** Options for {@link QueueStrategy}. */
export interface QueueStrategyOptions {
  /** A Supabase client signed in as the user (its session JWT is what `auth.uid()` sees). */
  readonly supabase: SupabaseLike;
  /** @defaultValue 'broadcast' */
  readonly notify?: QueueNotifyMode;
  /** Polling cadence for `notify: 'poll'`. */
  readonly poll?: QueuePollOptions;
  /** Clock, timers and logger. */
  readonly environment?: Partial<Environment>;
}

interface ActiveSearch {
  readonly searchId: string;
  readonly listener: StrategyListener;
  readonly ticketId: string;
  readonly userId: string;
  readonly topic: string;
  heartbeatMs: number | undefined;
  channel: RealtimeChannelLike | undefined;
  timer: TimerHandle | undefined;
  pollDelayMs: number;
  mode: QueueNotifyMode;
  done: boolean;
  /**
   * True while our cancel RPC is in flight. Its answer says how the search ended; a notification of the same
   * ending can arrive first (another connection), and must not be reported as an ending of its own.
   */
  cancelling: boolean;
}

const NOTIFY_MODES: readonly QueueNotifyMode[] = ['broadcast', 'postgres_changes', 'poll'];

function invalidConfig(message: string, field: string): MatchmakingError {
  return new MatchmakingError(MatchmakingErrorCode.InvalidConfig, message, { details: { field } });
}

/**
 * The queue tier: a Postgres queue behind RPCs, matching at join time (FIFO per pool, race-safe), with expiry,
 * heartbeats and a pg_cron sweep on the server.
 *
 * @remarks
 * Requires the shipped migrations. The user must be signed in: every RPC acts for `auth.uid()`. Several
 * strategies of one user (tabs, devices) share one ticket; a cancel in one ends the search in all of them.
 *
 * @example
 * ```ts
 * const matchmaker = new Matchmaker(new QueueStrategy({ supabase }));
 * // or: createMatchmaker({ strategy: 'queue', supabase, notify: 'poll' })
 * ```
 */
export class QueueStrategy implements MatchmakingStrategy {
  readonly kind = 'queue' as const;
  readonly #supabase: SupabaseLike;
  readonly #notify: QueueNotifyMode;
  readonly #poll: Required<QueuePollOptions>;
  readonly #env: Environment;
  #active: ActiveSearch | undefined;
  #closed = false;
  /** Channel removals still in flight; `close()` waits for them. */
  readonly #finishing = new Set<Promise<void>>();

  constructor(options: QueueStrategyOptions) {
    const supabase = options?.supabase;
    if (!supabase || typeof supabase.rpc !== 'function' || typeof supabase.channel !== 'function') {
      throw invalidConfig(
        "strategy 'queue' needs a Supabase client: pass { supabase: createClient(url, anonKey) }, signed in as the user.",
        'supabase',
      );
    }
    const notify = options.notify ?? 'broadcast';
    if (!NOTIFY_MODES.includes(notify)) {
      throw invalidConfig(
        `notify must be one of ${NOTIFY_MODES.map((m) => `'${m}'`).join(', ')}; got ${JSON.stringify(notify)}.`,
        'notify',
      );
    }
    const poll = {
      minIntervalMs: options.poll?.minIntervalMs ?? 1_000,
      maxIntervalMs: options.poll?.maxIntervalMs ?? 10_000,
      backoff: options.poll?.backoff ?? 1.5,
    };
    if (!(poll.minIntervalMs >= 100 && poll.maxIntervalMs >= poll.minIntervalMs && poll.backoff >= 1)) {
      throw invalidConfig(
        'poll needs minIntervalMs >= 100, maxIntervalMs >= minIntervalMs and backoff >= 1 (e.g. { minIntervalMs: 1000, maxIntervalMs: 10000, backoff: 1.5 }).',
        'poll',
      );
    }
    this.#supabase = supabase;
    this.#notify = notify;
    this.#poll = poll;
    this.#env = resolveEnvironment(options.environment);
  }

  async search(search: SearchInfo, listener: StrategyListener): Promise<SearchOutcome> {
    if (this.#closed)
      throw new MatchmakingError(MatchmakingErrorCode.Closed, 'This QueueStrategy is closed.');
    // The search id doubles as the ticket's idempotency key: a retried join never opens a second ticket.
    const state = await this.#call(QUEUE_RPC.join, { criteria: search.criteria, ticket_id: search.searchId });
    if (state.status === 'matched' && state.match) {
      return { status: 'matched', match: toMatchInfo(state.userId, state.match), userId: state.userId };
    }
    if (!state.ticketId)
      throw rpcError(QUEUE_RPC.join, { data: null, status: 200, error: { message: 'no ticket' } });
    const active: ActiveSearch = {
      searchId: search.searchId,
      listener,
      ticketId: state.ticketId,
      userId: state.userId,
      topic: state.topic,
      heartbeatMs: state.heartbeatIntervalMs,
      channel: undefined,
      timer: undefined,
      pollDelayMs: this.#poll.minIntervalMs,
      mode: this.#notify,
      done: false,
      cancelling: false,
    };
    this.#active = active;
    if (state.status !== 'waiting') {
      // Only possible when the server already ended this very ticket; report it once the search is confirmed.
      queueMicrotask(() => this.#apply(active, state));
      return { status: 'searching' };
    }
    if (active.mode !== 'poll') this.#listen(active);
    this.#schedule(active, state);
    return { status: 'searching' };
  }

  async cancel(searchId: string): Promise<CancelOutcome> {
    const active = this.#active;
    if (!active || active.searchId !== searchId || active.done) return { status: 'not_searching' };
    active.cancelling = true;
    let state: QueueState;
    try {
      state = await this.#call(QUEUE_RPC.cancel, { ticket_id: active.ticketId });
    } catch (error) {
      // An ending notified meanwhile was held back for this answer: ask the server again.
      active.cancelling = false;
      void this.#reconcile(active);
      throw error;
    }
    active.cancelling = false;
    if (state.status === 'cancelled' && state.result === 'cancelled') {
      await this.#finish(active);
      return { status: 'cancelled' };
    }
    if (state.status === 'matched' && state.match) {
      await this.#finish(active);
      return { status: 'matched', match: toMatchInfo(state.userId, state.match), userId: state.userId };
    }
    // Ended otherwise meanwhile (expired, disconnected, superseded): report the real reason.
    this.#apply(active, state);
    return { status: 'not_searching' };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const active = this.#active;
    if (active) await this.#finish(active);
    await Promise.all([...this.#finishing]);
  }

  async #call(fn: string, args: Record<string, unknown>): Promise<QueueState> {
    let response: Awaited<ReturnType<SupabaseLike['rpc']>>;
    try {
      response = await this.#supabase.rpc(fn, args);
    } catch (cause) {
      throw toMatchmakingError(cause, MatchmakingErrorCode.Unavailable, `${fn} failed`);
    }
    if (response.error) throw rpcError(fn, response);
    return decodeState(response.data);
  }

  /** Applies an RPC answer or a notification about the active ticket. */
  #apply(active: ActiveSearch, state: QueueState): void {
    if (active.done || this.#active !== active) return;
    if (state.ticketId !== undefined && state.ticketId !== active.ticketId) return;
    if (state.status === 'waiting') return;
    // A match is reported at once; any other ending waits for the in-flight cancel's answer, which reports it.
    if (active.cancelling && state.status !== 'matched') return;
    if (state.status === 'matched' && state.match) {
      void this.#finish(active);
      active.listener.matched(active.searchId, {
        match: toMatchInfo(active.userId, state.match),
        userId: active.userId,
      });
      return;
    }
    void this.#finish(active);
    active.listener.ended(active.searchId, endReason(state.status) ?? 'expired');
  }

  /** Subscribes to the user's notifications; reconciles after every (re)subscribe. */
  #listen(active: ActiveSearch): void {
    const onNotification = (payload: unknown) => this.#onNotification(active, payload);
    let channel: RealtimeChannelLike;
    if (active.mode === 'broadcast') {
      channel = this.#supabase
        .channel(active.topic, { config: { private: true } })
        .on('broadcast', { event: 'matched' }, (message) => onNotification(message.payload))
        .on('broadcast', { event: 'cancelled' }, (message) => onNotification(message.payload));
    } else {
      channel = this.#supabase
        .channel(`matchmaker:history:${active.userId}:${active.searchId}`)
        .on(
          'postgres_changes',
          {
            event: 'INSERT',
            schema: 'matchmaker',
            table: 'ticket_history',
            filter: `user_id=eq.${active.userId}`,
          },
          (change) => this.#onHistoryRow(active, change.new),
        )
        // Changes committed before the server's "Subscribed to PostgreSQL" are not delivered: reconcile then.
        .on('system', {}, (payload) => {
          const p = payload as { extension?: string; status?: string };
          if (p.extension === 'postgres_changes' && p.status === 'ok') void this.#reconcile(active);
        });
    }
    active.channel = channel;
    channel.subscribe((status, error) => {
      if (active.done) return;
      if (status === 'SUBSCRIBED') {
        void this.#reconcile(active);
      } else if (status === 'CLOSED') {
        // The server stopped the channel (quota, token expiry) and will not rejoin it: fall back to polling.
        active.channel = undefined;
        active.mode = 'poll';
        active.listener.error(
          new MatchmakingError(
            MatchmakingErrorCode.Unavailable,
            'The Realtime channel was closed by the server; falling back to polling.',
            { cause: error },
          ),
        );
        this.#schedule(active);
      } else {
        active.listener.error(
          new MatchmakingError(
            MatchmakingErrorCode.Unavailable,
            `Realtime channel ${status.toLowerCase()}; supabase-js is rejoining.`,
            { cause: error },
          ),
        );
      }
    });
  }

  #onNotification(active: ActiveSearch, payload: unknown): void {
    if (typeof payload !== 'object' || payload === null) return;
    const p = payload as Record<string, unknown>;
    if (p.ticket_id !== active.ticketId) return;
    try {
      if (p.type === 'matched') {
        this.#apply(active, { ...this.#blank(active), status: 'matched', match: decodeMatch(p.match) });
      } else if (p.type === 'cancelled' && typeof p.outcome === 'string') {
        this.#apply(active, { ...this.#blank(active), status: p.outcome as QueueStatus });
      }
    } catch (error) {
      active.listener.error(toMatchmakingError(error, MatchmakingErrorCode.Protocol));
    }
  }

  #onHistoryRow(active: ActiveSearch, row: unknown): void {
    if (typeof row !== 'object' || row === null) return;
    const h = row as Record<string, unknown>;
    if (h.ticket_id !== active.ticketId) return;
    if (h.outcome === 'matched') {
      this.#onNotification(active, {
        type: 'matched',
        ticket_id: h.ticket_id,
        match: {
          id: h.match_id,
          partner_id: h.partner_id,
          created_at: h.ended_at,
          criteria: h.match_criteria,
        },
      });
    } else {
      this.#onNotification(active, { type: 'cancelled', ticket_id: h.ticket_id, outcome: h.outcome });
    }
  }

  #blank(active: ActiveSearch): QueueState {
    return {
      status: 'waiting',
      result: 'notification',
      ticketId: active.ticketId,
      userId: active.userId,
      topic: active.topic,
      match: undefined,
      reason: undefined,
      heartbeatIntervalMs: active.heartbeatMs,
      widensAt: undefined,
    };
  }

  async #reconcile(active: ActiveSearch): Promise<void> {
    if (active.done) return;
    try {
      this.#apply(active, await this.#call(QUEUE_RPC.state, { ticket_id: active.ticketId }));
    } catch (error) {
      active.listener.error(toMatchmakingError(error, MatchmakingErrorCode.Unavailable));
    }
  }

  /**
   * Plans the next heartbeat (which doubles as the poll in `poll` mode): at the server's heartbeat interval, at
   * the moment a flexible criterion widens if sooner, and on the adaptive poll schedule in `poll` mode.
   */
  #schedule(active: ActiveSearch, state?: QueueState): void {
    if (active.done) return;
    if (active.timer !== undefined) this.#env.timers.clearTimeout(active.timer);
    active.timer = undefined;
    const candidates: number[] = [];
    if (active.heartbeatMs !== undefined) candidates.push(active.heartbeatMs);
    if (active.mode === 'poll') {
      candidates.push(active.pollDelayMs);
      active.pollDelayMs = Math.min(this.#poll.maxIntervalMs, active.pollDelayMs * this.#poll.backoff);
    }
    if (state?.widensAt)
      candidates.push(Math.max(0, Date.parse(state.widensAt) - this.#env.clock.now()) + 50);
    if (candidates.length === 0) return;
    active.timer = this.#env.timers.setTimeout(
      () => {
        active.timer = undefined;
        void this.#heartbeat(active);
      },
      Math.min(...candidates),
    );
  }

  async #heartbeat(active: ActiveSearch): Promise<void> {
    if (active.done) return;
    let state: QueueState | undefined;
    try {
      state = await this.#call(QUEUE_RPC.heartbeat, { ticket_id: active.ticketId });
      if (state.heartbeatIntervalMs !== undefined) active.heartbeatMs = state.heartbeatIntervalMs;
      this.#apply(active, state);
    } catch (error) {
      active.listener.error(toMatchmakingError(error, MatchmakingErrorCode.Unavailable));
    }
    this.#schedule(active, state);
  }

  async #finish(active: ActiveSearch): Promise<void> {
    if (active.done) return;
    active.done = true;
    if (this.#active === active) this.#active = undefined;
    if (active.timer !== undefined) this.#env.timers.clearTimeout(active.timer);
    active.timer = undefined;
    const channel = active.channel;
    active.channel = undefined;
    if (!channel) return;
    const removal = Promise.resolve(this.#supabase.removeChannel(channel)).then(
      () => undefined,
      (error: unknown) => this.#env.logger.warn('removeChannel failed', { error }),
    );
    this.#finishing.add(removal);
    try {
      await removal;
    } finally {
      this.#finishing.delete(removal);
    }
  }
}
