import type { Environment, TimerHandle } from '../../core/environment';
import { MatchmakingError, MatchmakingErrorCode } from '../../core/errors';
import type { StrategyWarning } from '../../core/MatchmakingStrategy';
import type { PresenceMetaLike, RealtimeChannelLike, SupabaseLike } from '../supabaseLike';
import { PresenceView } from './PresenceView';
import { firstJoinRefusal, isQuotaMessage } from './presenceProtocol';
import { PresenceCallLimiter, QuotaWarningCode } from './quotaGuard';

/** What a {@link PresenceRoom} tells its owner. */
export interface PresenceRoomHandlers {
  /** A meta appeared (it is already in `room.view` unless it was not a searcher's payload). */
  joined(room: PresenceRoom, ref: string, meta: PresenceMetaLike): void;
  /** A meta is about to disappear: it is still in `room.view`; the owner removes it. */
  leaving(room: PresenceRoom, ref: string): void;
  /** The channel (re)joined; `first` is false after a reconnect (the server forgot our presence). */
  subscribed(room: PresenceRoom, first: boolean): void;
  /** The channel errored or timed out; supabase-js is rejoining it. */
  interrupted(room: PresenceRoom, status: string, error: Error | undefined): void;
  /** The server closed the channel for good (system error + phx_close); supabase-js will not rejoin. */
  stopped(room: PresenceRoom, message: string, quota: boolean): void;
  /** A broadcast hint from another member. */
  hint(room: PresenceRoom, event: string, payload: unknown): void;
  /** Advice (a track that had to wait for the per-channel presence window). */
  warn(warning: StrategyWarning): void;
}

/** Broadcast events the presence tiers exchange in their channels (hints only; never trusted for a match). */
export const PRESENCE_HINTS = { ineligible: 'mm_ineligible' } as const;

type RoomStatus = 'joining' | 'joined' | 'interrupted' | 'closed';

/** Longest wait for a track/untrack reply (supabase-js's own push timeout is 10 s once sent). */
const PUSH_TIMEOUT_MS = 12_000;

/**
 * One presence channel joined for one search: the searchers it holds ({@link PresenceView}), our own track,
 * and a clean leave. Tracks and untracks go through a {@link PresenceCallLimiter}, so a channel never sees more
 * than 5 of them in 30 s.
 *
 * @internal
 */
export class PresenceRoom {
  readonly view = new PresenceView();
  readonly #supabase: SupabaseLike;
  readonly #handlers: PresenceRoomHandlers;
  readonly #env: Environment;
  readonly #limiter = new PresenceCallLimiter();
  #channel: RealtimeChannelLike | undefined;
  #status: RoomStatus = 'joining';
  #joins = 0;
  #tracked = false;
  #leaving: Promise<void> | undefined;
  /** leave() was called: queued tracks give up, and the leave does the untrack. */
  #leaveRequested = false;
  /** The leave waits for the presence window to untrack (a shard move) instead of skipping the untrack. */
  #leaveWaits = false;
  /** Track/untrack pushes sent and not yet answered. */
  readonly #inFlight = new Set<Promise<string>>();
  #stopMessage: string | undefined;
  #stopError: MatchmakingError | undefined;
  #waiters: { resolve: () => void; reject: (error: MatchmakingError) => void }[] = [];
  readonly #closeWatchers = new Set<() => void>();
  readonly #sleeps = new Set<{ timer: TimerHandle; resolve: () => void }>();

  constructor(
    supabase: SupabaseLike,
    readonly name: string,
    readonly shard: number | undefined,
    handlers: PresenceRoomHandlers,
    env: Environment,
  ) {
    this.#supabase = supabase;
    this.#handlers = handlers;
    this.#env = env;
  }

  /** Joined and not interrupted. */
  get joined(): boolean {
    return this.#status === 'joined';
  }

  /** Our presence is on the server (tracked in the current join). */
  get tracked(): boolean {
    return this.#tracked && this.#status === 'joined';
  }

  /** Closed for good (by us or by the server). */
  get closed(): boolean {
    return this.#status === 'closed';
  }

  /** Create the channel and subscribe. Presence is enabled with a server-chosen key per join. */
  open(): void {
    const channel = this.#supabase
      .channel(this.name, { config: { presence: { key: '', enabled: true }, broadcast: { self: false } } })
      .on('presence', { event: 'join' }, (payload) => {
        for (const meta of payload.newPresences) this.#handlers.joined(this, meta.presence_ref, meta);
      })
      .on('presence', { event: 'leave' }, (payload) => {
        for (const meta of payload.leftPresences) this.#handlers.leaving(this, meta.presence_ref);
      })
      .on('broadcast', { event: PRESENCE_HINTS.ineligible }, (message) =>
        this.#handlers.hint(this, message.event, message.payload),
      )
      .on('system', {}, (payload) => {
        const p = payload as { extension?: unknown; status?: unknown; message?: unknown };
        if (p.extension === 'system' && p.status === 'error' && typeof p.message === 'string') {
          this.#stopMessage = p.message;
        }
      });
    this.#channel = channel;
    channel.subscribe((status, error) => this.#onStatus(status, error));
  }

  /**
   * Resolves once the channel is joined. Rejects when the server stops it, when its first join fails with a
   * quota error (supabase-js would retry forever), or after `timeoutMs` (0: no timeout).
   */
  ready(timeoutMs: number): Promise<void> {
    if (this.#status === 'joined') return Promise.resolve();
    if (this.#status === 'closed') return Promise.reject(this.#closedError());
    return new Promise<void>((resolve, reject) => {
      let timer: TimerHandle | undefined;
      const waiter = {
        resolve: () => {
          if (timer !== undefined) this.#env.timers.clearTimeout(timer);
          resolve();
        },
        reject: (error: MatchmakingError) => {
          if (timer !== undefined) this.#env.timers.clearTimeout(timer);
          reject(error);
        },
      };
      this.#waiters.push(waiter);
      if (timeoutMs > 0) {
        timer = this.#env.timers.setTimeout(() => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          reject(
            new MatchmakingError(
              MatchmakingErrorCode.Timeout,
              `The presence channel ${this.name} did not join within ${timeoutMs} ms. Is Realtime reachable?`,
              { details: { channel: this.name } },
            ),
          );
        }, timeoutMs);
      }
    });
  }

  /** Track `payload` as our presence in this join (waits for the per-channel window if it must). */
  async track(payload: Record<string, unknown>): Promise<void> {
    const channel = this.#channel;
    if (!channel || this.#status === 'closed' || this.#leaveRequested) throw this.#closedError();
    await this.#respectLimit('track');
    if (this.closed || this.#leaveRequested) throw this.#closedError();
    this.#limiter.record(this.#env.clock.now());
    const result = await this.#push(channel.track(payload));

    if (result !== 'ok') {
      if (this.closed) throw this.#closedError();
      throw new MatchmakingError(
        MatchmakingErrorCode.Unavailable,
        `Tracking presence in ${this.name} failed (${result}).`,
        { details: { channel: this.name, result } },
      );
    }
    this.#tracked = true;
  }

  /** Remove our presence but stay in the channel (we keep seeing the others). */
  async untrack(): Promise<void> {
    const channel = this.#channel;
    if (!channel || !this.tracked || this.#leaveRequested) return;
    await this.#respectLimit('untrack');
    // A leave started meanwhile does the untrack itself (see leave()).
    if (!this.tracked || this.#leaveRequested) return;
    this.#tracked = false;
    this.#limiter.record(this.#env.clock.now());
    const result = await this.#push(channel.untrack());

    if (result !== 'ok' && !this.closed) {
      throw new MatchmakingError(
        MatchmakingErrorCode.Unavailable,
        `Untracking presence in ${this.name} failed (${result}).`,
        { details: { channel: this.name, result } },
      );
    }
  }

  /** Send a hint to the other members (fire and forget). */
  hint(event: string, payload: Record<string, unknown>): void {
    if (this.#status !== 'joined' || !this.#channel) return;
    void this.#channel.send({ type: 'broadcast', event, payload }).catch(() => undefined);
  }

  /**
   * Untrack (when our presence is on the server) and leave the channel. Idempotent; a call without
   * `waitForWindow` ends the wait of an earlier call with it.
   *
   * @remarks
   * Only the untrack's reply tells us our presence is gone: the server answers a `phx_leave` first and removes
   * the channel's presence afterwards, when the channel process has ended (Phoenix's tracker sees it exit), so
   * a track in another channel right after a leave can briefly overlap it. So, when our presence is on the
   * server, the leave untracks first and waits for the reply (and for any track or untrack already on its way).
   *
   * When the channel's 5-per-30-s presence window is used up, a sixth call would make the server close the
   * channel. With `waitForWindow` (a shard move: the next channel must not see us twice) the leave waits for
   * the window and untracks then; we stay present here meanwhile. Without it (the search ended) the untrack is
   * skipped, and the presence stays until the server has handled the `phx_leave`.
   */
  leave(options: { readonly waitForWindow?: boolean } = {}): Promise<void> {
    const wait = options.waitForWindow === true;
    if (!this.#leaving) {
      // Tracks and untracks waiting for the window give up now (before #leave's first await).
      this.#leaveRequested = true;
      this.#leaveWaits = wait;
      this.#wakeSleepers();
      this.#leaving = this.#leave();
    } else if (!wait && this.#leaveWaits) {
      // The search ended while a move waited for the window: leave now.
      this.#leaveWaits = false;
      this.#wakeSleepers();
    }
    return this.#leaving;
  }

  /** How long an untrack must wait for the presence window now (0: not tracked, or it may go at once). */
  untrackWaitMs(): number {
    return this.tracked ? this.#limiter.waitMs(this.#env.clock.now()) : 0;
  }

  async #leave(): Promise<void> {
    const channel = this.#channel;
    if (!channel) {
      this.#markClosed(this.#closedError());
      return;
    }
    // A track on its way may still put our presence on the server; an untrack on its way must be answered.
    await Promise.all([...this.#inFlight]);
    await this.#respectLimit('untrack', true);
    if (this.tracked && this.#limiter.waitMs(this.#env.clock.now()) === 0) {
      this.#tracked = false;
      this.#limiter.record(this.#env.clock.now());
      await this.#push(channel.untrack());
    }
    this.#markClosed(this.#closedError());
    await Promise.resolve(this.#supabase.removeChannel(channel)).catch(() => undefined);
  }

  #onStatus(status: string, error: Error | undefined): void {
    // Closed already (our own leave, or a server stop). supabase-js may report the CLOSED of our own leave
    // synchronously inside removeChannel: #leave marks the room closed before it calls removeChannel, so that
    // CLOSED is not read as a server stop (it used to end the search on a shard move of an untracked room).
    if (this.#status === 'closed') return;
    // Whatever changed, a wait for the presence window looks again (a rejoin resets it; a drop ends it).
    this.#wakeSleepers();
    if (status === 'SUBSCRIBED') {
      this.#joins += 1;
      this.#status = 'joined';
      this.#tracked = false;
      // A new server-side channel process: its presence window starts over.
      this.#limiter.reset();
      const waiters = this.#waiters;
      this.#waiters = [];
      // Leaving (waiting for the window to untrack): nothing to re-track; the leave goes on.
      if (!this.#leaveRequested) this.#handlers.subscribed(this, this.#joins === 1);
      for (const waiter of waiters) waiter.resolve();
      return;
    }
    if (status === 'CLOSED' && this.#leaveRequested) {
      // The server ended the channel while we were leaving it: our presence went with it.
      this.#markClosed(this.#closedError());
      return;
    }
    if (status === 'CLOSED') {
      const message = this.#stopMessage ?? 'channel closed by the server';
      const quota = isQuotaMessage(message);
      this.#stopError = new MatchmakingError(
        quota ? MatchmakingErrorCode.RateLimited : MatchmakingErrorCode.Unavailable,
        `The Realtime server closed the presence channel ${this.name}: "${message}". ${
          quota
            ? 'A Supabase Realtime quota was exceeded (see docs/presence-capacity.md); the search ended.'
            : 'The search ended; start a new one.'
        }`,
        { details: { channel: this.name, message } },
      );
      this.#markClosed(this.#stopError);
      this.#handlers.stopped(this, message, quota);
      return;
    }
    // CHANNEL_ERROR / TIMED_OUT: the server no longer holds our presence; supabase-js rejoins.
    this.#status = 'interrupted';
    this.#tracked = false;
    if (this.#leaveRequested) return;
    const reason = error?.message ?? '';
    const refusal = this.#joins === 0 && this.#waiters.length > 0 ? firstJoinRefusal(reason) : undefined;
    if (refusal) {
      // A first join refused over a quota or for good (private channels only, Realtime disabled, token
      // refused): end the search with the server's reason now; supabase-js would rejoin forever and the join
      // timeout would hide the reason.
      this.#stopError = new MatchmakingError(
        refusal.code,
        `Realtime refused to join ${this.name}: "${reason}". ${refusal.advice}`,
        { cause: error, details: { channel: this.name, message: reason } },
      );
      this.#rejectWaiters(this.#stopError);
      return;
    }
    this.#handlers.interrupted(this, status, error);
  }

  #closedError(): MatchmakingError {
    return (
      this.#stopError ??
      new MatchmakingError(MatchmakingErrorCode.Unavailable, `The presence channel ${this.name} is closed.`, {
        details: { channel: this.name },
      })
    );
  }

  #markClosed(error: MatchmakingError): void {
    this.#status = 'closed';
    this.#tracked = false;
    this.#rejectWaiters(error);
    for (const watcher of [...this.#closeWatchers]) watcher();
    this.#closeWatchers.clear();
    this.#wakeSleepers();
  }

  #wakeSleepers(): void {
    for (const sleep of [...this.#sleeps]) {
      this.#env.timers.clearTimeout(sleep.timer);
      sleep.resolve();
    }
    this.#sleeps.clear();
  }

  /** {@link #raceClose} for a track/untrack push, remembered until it is answered (see #leave). */
  #push(promise: Promise<string>): Promise<string> {
    const raced = this.#raceClose(promise);
    this.#inFlight.add(raced);
    void raced.then(() => this.#inFlight.delete(raced));
    return raced;
  }

  #rejectWaiters(error: MatchmakingError): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) waiter.reject(error);
  }

  /**
   * Resolves with `promise`'s value, with 'closed' as soon as the channel closes, or with 'timed out' after
   * PUSH_TIMEOUT_MS: supabase-js buffers a push while its channel rejoins and only then starts its own timeout.
   */
  #raceClose(promise: Promise<string>): Promise<string> {
    if (this.#status === 'closed') return Promise.resolve('closed');
    return new Promise<string>((resolve) => {
      let timer: TimerHandle | undefined;
      const settle = (value: string) => {
        this.#closeWatchers.delete(watcher);
        if (timer !== undefined) this.#env.timers.clearTimeout(timer);
        timer = undefined;
        resolve(value);
      };
      const watcher = () => settle('closed');
      this.#closeWatchers.add(watcher);
      timer = this.#env.timers.setTimeout(() => settle('timed out'), PUSH_TIMEOUT_MS);
      promise.then(settle, () => settle('error'));
    });
  }

  /**
   * Waits until the channel's presence window allows one more call. Returns early when the room closes, when
   * a leave starts (for a track or a step-aside untrack: the leave decides), or when our presence is gone.
   */
  async #respectLimit(kind: 'track' | 'untrack', forLeave = false): Promise<void> {
    let warned = false;
    for (;;) {
      if (this.closed) return;
      if (kind === 'untrack' && !this.tracked) return;
      if (this.#leaveRequested && !(forLeave && this.#leaveWaits)) return;
      const wait = this.#limiter.waitMs(this.#env.clock.now());
      if (wait <= 0) return;
      if (!warned) {
        warned = true;
        this.#handlers.warn({
          code: QuotaWarningCode.ClientPresence,
          message: `A presence ${kind} on ${this.name} waits ${wait} ms: Supabase closes a channel on the 6th track/untrack within 30 s.`,
          details: { waitMs: wait, channel: this.name },
        });
      }
      await new Promise<void>((resolve) => {
        const sleep = {
          timer: this.#env.timers.setTimeout(() => {
            this.#sleeps.delete(sleep);
            resolve();
          }, wait),
          resolve,
        };
        this.#sleeps.add(sleep);
      });
    }
  }
}
