import { EventEmitter } from 'eventemitter3';
import { type Environment, randomUuid, resolveEnvironment, type TimerHandle } from './environment';
import { MatchmakingError, MatchmakingErrorCode, toMatchmakingError } from './errors';
import type { MatchmakerEvents } from './events';
import type { MatchmakingStrategy, StrategyListener, StrategyMatch } from './MatchmakingStrategy';
import type {
  CancelReason,
  MatchForUser,
  MatchmakerSnapshot,
  SearchCriteria,
  SearchInfo,
  StartOptions,
} from './types';
import { validateCriteria } from './validation';

/** Options shared by every matchmaker, whatever the tier. */
export interface MatchmakerOptions {
  /**
   * End a search on the client after this many milliseconds without a match (reason `timeout`).
   * Backends also expire tickets on their own (reason `expired`).
   * @defaultValue no client-side timeout
   */
  readonly searchTimeoutMs?: number;
  /** Clock, timers, logger and random source. */
  readonly environment?: Partial<Environment>;
}

/** Listener for {@link Matchmaker.subscribe}. */
export type SnapshotListener = () => void;

const IDLE: MatchmakerSnapshot = Object.freeze({ status: 'idle' });
const CLOSED: MatchmakerSnapshot = Object.freeze({ status: 'closed' });

/**
 * Finds a partner for one user through any tier, with the same events and snapshot everywhere.
 *
 * @remarks
 * A matchmaker runs one search at a time. It is also a framework-agnostic store: {@link subscribe} and
 * {@link getSnapshot} plug straight into React's `useSyncExternalStore` (or any signal library). Create it with
 * {@link createMatchmaker}, or pass any {@link MatchmakingStrategy} to the constructor.
 *
 * @example
 * ```ts
 * const matchmaker = createMatchmaker({ strategy: 'queue', supabase });
 * matchmaker.on('matched', ({ match }) => openChat(match.matchId, match.partnerId));
 * await matchmaker.start({ criteria: { language: 'en' } });
 * // later
 * await matchmaker.cancel();
 * await matchmaker.close();
 * ```
 */
export class Matchmaker {
  readonly #strategy: MatchmakingStrategy;
  readonly #env: Environment;
  readonly #searchTimeoutMs: number | undefined;
  readonly #emitter = new EventEmitter<MatchmakerEvents>();
  readonly #subscribers = new Set<SnapshotListener>();
  #snapshot: MatchmakerSnapshot = IDLE;
  /** Serialises start/cancel/close so the strategy never sees overlapping commands. */
  #queue: Promise<unknown> = Promise.resolve();
  #closing: Promise<void> | undefined;
  #timeout: TimerHandle | undefined;
  #pendingStart: Promise<SearchInfo> | undefined;

  constructor(strategy: MatchmakingStrategy, options: MatchmakerOptions = {}) {
    const timeout = options.searchTimeoutMs;
    if (timeout !== undefined && !(Number.isFinite(timeout) && timeout > 0)) {
      throw new MatchmakingError(
        MatchmakingErrorCode.InvalidConfig,
        `searchTimeoutMs must be a positive number of milliseconds, got ${String(timeout)}. Omit it to let the backend decide when a search expires.`,
        { details: { field: 'searchTimeoutMs' } },
      );
    }
    this.#strategy = strategy;
    this.#env = resolveEnvironment(options.environment);
    this.#searchTimeoutMs = timeout;
    // Bound so they can be passed around (useSyncExternalStore(matchmaker.subscribe, matchmaker.getSnapshot)).
    this.subscribe = this.subscribe.bind(this);
    this.getSnapshot = this.getSnapshot.bind(this);
  }

  /** The tier this matchmaker uses. */
  get strategy(): MatchmakingStrategy['kind'] {
    return this.#strategy.kind;
  }

  /** The current state. The same object is returned until the state changes. */
  getSnapshot(): MatchmakerSnapshot {
    return this.#snapshot;
  }

  /**
   * Call `listener` after every state change. Returns the function that removes it.
   *
   * @example React
   * ```tsx
   * const snapshot = useSyncExternalStore(matchmaker.subscribe, matchmaker.getSnapshot);
   * ```
   */
  subscribe(listener: SnapshotListener): () => void {
    this.#subscribers.add(listener);
    return () => {
      this.#subscribers.delete(listener);
    };
  }

  /** Listen to an event. Returns the function that removes the listener. */
  on<TEvent extends keyof MatchmakerEvents>(event: TEvent, listener: MatchmakerEvents[TEvent]): () => void {
    this.#emitter.on(event, listener as never);
    return () => this.off(event, listener);
  }

  /** Listen to the next occurrence of an event only. Returns the function that removes the listener. */
  once<TEvent extends keyof MatchmakerEvents>(event: TEvent, listener: MatchmakerEvents[TEvent]): () => void {
    this.#emitter.once(event, listener as never);
    return () => this.off(event, listener);
  }

  /** Remove a listener added with {@link on} or {@link once}. */
  off<TEvent extends keyof MatchmakerEvents>(event: TEvent, listener: MatchmakerEvents[TEvent]): void {
    this.#emitter.off(event, listener as never);
  }

  /**
   * Start searching for a partner. Resolves with the search once the backend holds it.
   *
   * @remarks
   * While a search runs, `start()` resolves with that search and changes nothing, unless `restart: true`, which
   * cancels it (reason `superseded`) and starts a new one. After a match or a cancellation, `start()` begins a
   * new search. Throws a {@link MatchmakingError} when the backend refuses the search; the snapshot is then
   * `error`.
   */
  start(options: StartOptions = {}): Promise<SearchInfo> {
    this.#assertOpen();
    const criteria = validateCriteria(options.criteria);
    const current = this.#snapshot;
    if (!options.restart) {
      if (current.status === 'starting' && this.#pendingStart) return this.#pendingStart;
      if (current.status === 'searching') return Promise.resolve(current.search);
    }
    const run = this.#enqueue(async () => {
      const now = this.#snapshot;
      if (now.status === 'searching' || now.status === 'starting') {
        if (!options.restart) return now.search;
        await this.#cancelCurrent('superseded');
      }
      return this.#startSearch(criteria);
    });
    this.#pendingStart = run;
    const clear = () => {
      if (this.#pendingStart === run) this.#pendingStart = undefined;
    };
    run.then(clear, clear);
    return run;
  }

  /**
   * Withdraw the running search. Resolves `true` when it was cancelled (a `cancelled` event with reason `user`
   * fired), `false` when there was nothing to cancel or the match won the race (the snapshot is then `matched`).
   */
  cancel(): Promise<boolean> {
    if (this.#snapshot.status === 'closed') return Promise.resolve(false);
    return this.#enqueue(() => this.#cancelCurrent('user'));
  }

  /**
   * Cancel any running search (reason `closed`), then release every connection, channel and timer.
   * Idempotent; afterwards every method but `close` throws `closed`, and no event fires.
   */
  close(): Promise<void> {
    if (!this.#closing) {
      this.#closing = this.#enqueue(async () => {
        try {
          await this.#cancelCurrent('closed');
        } catch (error) {
          this.#env.logger.warn('cancel during close failed', { error });
        }
        await this.#strategy.close();
        this.#setSnapshot(CLOSED, () => {});
        this.#emitter.removeAllListeners();
        this.#subscribers.clear();
      });
    }
    return this.#closing;
  }

  #assertOpen(): void {
    if (this.#closing) {
      throw new MatchmakingError(
        MatchmakingErrorCode.Closed,
        'This matchmaker was closed. Create a new one with createMatchmaker() to search again.',
      );
    }
  }

  #enqueue<T>(operation: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(operation, operation);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #startSearch(criteria: SearchCriteria): Promise<SearchInfo> {
    const search: SearchInfo = Object.freeze({
      searchId: randomUuid(this.#env.random),
      criteria,
      startedAt: this.#env.clock.now(),
    });
    this.#setSnapshot(Object.freeze({ status: 'starting', search }), () => {});
    let outcome: Awaited<ReturnType<MatchmakingStrategy['search']>>;
    try {
      outcome = await this.#strategy.search(search, this.#listenerFor());
    } catch (cause) {
      const error = toMatchmakingError(cause, MatchmakingErrorCode.Unavailable, 'Could not start the search');
      if (this.#isCurrent(search.searchId)) {
        this.#setSnapshot(Object.freeze({ status: 'error', error }), () =>
          this.#emitter.emit('error', { type: 'error', error, fatal: true }),
        );
      }
      throw error;
    }
    // A listener callback may already have moved the search on (e.g. the match arrived before the reply).
    if (this.#snapshot.status === 'starting' && this.#snapshot.search.searchId === search.searchId) {
      this.#enterSearching(search);
      if (outcome.status === 'matched') this.#applyMatch(search.searchId, outcome);
    }
    return search;
  }

  #enterSearching(search: SearchInfo): void {
    this.#setSnapshot(Object.freeze({ status: 'searching', search }), () =>
      this.#emitter.emit('searching', { type: 'searching', search, strategy: this.#strategy.kind }),
    );
    if (this.#searchTimeoutMs !== undefined) {
      this.#timeout = this.#env.timers.setTimeout(() => {
        this.#timeout = undefined;
        if (this.#isCurrent(search.searchId)) {
          this.#enqueue(() => this.#cancelCurrent('timeout')).catch((error: unknown) =>
            this.#reportRecoverable(toMatchmakingError(error, MatchmakingErrorCode.Unavailable)),
          );
        }
      }, this.#searchTimeoutMs);
    }
  }

  /** True while `searchId` is the search in progress (starting or searching). */
  #isCurrent(searchId: string): boolean {
    const s = this.#snapshot;
    return (s.status === 'starting' || s.status === 'searching') && s.search.searchId === searchId;
  }

  #listenerFor(): StrategyListener {
    return {
      matched: (searchId, result) => {
        if (!this.#isCurrent(searchId)) return;
        const s = this.#snapshot;
        if (s.status === 'starting') this.#enterSearching(s.search);
        this.#applyMatch(searchId, result);
      },
      ended: (searchId, reason, error) => {
        if (!this.#isCurrent(searchId)) return;
        const s = this.#snapshot;
        if (s.status === 'starting') this.#enterSearching(s.search);
        this.#applyCancelled(reason, error);
      },
      error: (error) => this.#reportRecoverable(error),
      warning: (warning) => {
        if (this.#snapshot.status === 'closed') return;
        this.#emitter.emit('warning', {
          type: 'warning',
          code: warning.code,
          message: warning.message,
          details: warning.details,
        });
      },
    };
  }

  #reportRecoverable(error: MatchmakingError): void {
    if (this.#snapshot.status === 'closed') return;
    this.#emitter.emit('error', { type: 'error', error, fatal: false });
  }

  #applyMatch(searchId: string, result: StrategyMatch): void {
    const s = this.#snapshot;
    if (s.status !== 'searching' || s.search.searchId !== searchId) return;
    const { match, userId } = result;
    const partnerId = match.userIds[0] === userId ? match.userIds[1] : match.userIds[0];
    const forUser: MatchForUser = Object.freeze({
      ...match,
      userId,
      partnerId,
      waitedMs: Math.max(0, this.#env.clock.now() - s.search.startedAt),
    });
    this.#clearTimeout();
    this.#setSnapshot(Object.freeze({ status: 'matched', search: s.search, match: forUser }), () =>
      this.#emitter.emit('matched', { type: 'matched', search: s.search, match: forUser }),
    );
  }

  #applyCancelled(reason: CancelReason, error?: MatchmakingError): void {
    const s = this.#snapshot;
    if (s.status !== 'searching') return;
    this.#clearTimeout();
    const ended = error
      ? { status: 'cancelled' as const, search: s.search, reason, error }
      : { status: 'cancelled' as const, search: s.search, reason };
    this.#setSnapshot(Object.freeze(ended), () => {
      if (error && reason === 'error') this.#emitter.emit('error', { type: 'error', error, fatal: true });
      this.#emitter.emit('cancelled', { type: 'cancelled', ...ended });
    });
  }

  async #cancelCurrent(reason: Exclude<CancelReason, 'expired' | 'disconnected' | 'error' | 'rate_limited'>) {
    const s = this.#snapshot;
    if (s.status !== 'searching') return false;
    const outcome = await this.#strategy.cancel(s.search.searchId);
    if (outcome.status === 'matched') {
      this.#applyMatch(s.search.searchId, outcome);
      return false;
    }
    // `not_searching`: the backend already ended it; report the cancellation the caller asked for unless a
    // listener callback reported the real ending meanwhile.
    const stillCurrent = this.#isCurrent(s.search.searchId);
    this.#applyCancelled(reason);
    return stillCurrent && outcome.status === 'cancelled';
  }

  #clearTimeout(): void {
    if (this.#timeout !== undefined) {
      this.#env.timers.clearTimeout(this.#timeout);
      this.#timeout = undefined;
    }
  }

  /** Replace the snapshot, then fire the specific event, then `state`, then store subscribers. */
  #setSnapshot(next: MatchmakerSnapshot, emitSpecific: () => void): void {
    const previous = this.#snapshot;
    if (Object.is(previous, next)) return;
    this.#snapshot = next;
    emitSpecific();
    this.#emitter.emit('state', { type: 'state', snapshot: next, previous });
    for (const listener of [...this.#subscribers]) listener();
  }
}
