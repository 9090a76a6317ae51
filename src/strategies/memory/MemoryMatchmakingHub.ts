import { type Environment, randomUuid, resolveEnvironment, type TimerHandle } from '../../core/environment';
import type { StrategyListener } from '../../core/MatchmakingStrategy';
import type { MatchInfo, SearchCriteria } from '../../core/types';
import { criteriaPoolKey } from '../../core/validation';

/** Options for {@link MemoryMatchmakingHub}. */
export interface MemoryMatchmakingHubOptions {
  /** Tickets expire after this long without a match (ended with reason `expired`). @defaultValue 300000 (5 min) */
  readonly ticketTtlMs?: number;
  /** Clock, timers and random source used for ids, timestamps and expiry. */
  readonly environment?: Partial<Environment>;
}

/** One strategy instance waiting on a ticket: where the hub delivers that search's outcome. */
export interface MemoryWatcher {
  readonly searchId: string;
  readonly listener: StrategyListener;
}

interface Ticket {
  readonly userId: string;
  readonly criteria: SearchCriteria;
  readonly pool: string;
  readonly watchers: MemoryWatcher[];
  expiry: TimerHandle | undefined;
}

/** What {@link MemoryMatchmakingHub.join} answered. */
export type HubJoinResult =
  | { readonly status: 'searching' }
  | { readonly status: 'matched'; readonly match: MatchInfo };
/** What {@link MemoryMatchmakingHub.cancel} answered. */
export type HubCancelResult =
  | { readonly status: 'cancelled' }
  | { readonly status: 'matched'; readonly match: MatchInfo }
  | { readonly status: 'not_searching' };

/**
 * An in-process matchmaking backend: the reference semantics every tier must show, used by unit tests and by
 * the conformance suite. FIFO per pool (equal criteria), one open ticket per user shared by all of that user's
 * strategies, cancel atomic against pairing, ticket expiry. Outcomes reach listeners asynchronously (on a
 * microtask), as they would over a network.
 *
 * @example
 * ```ts
 * const hub = new MemoryMatchmakingHub();
 * const alice = new Matchmaker(new MemoryStrategy({ hub, userId: 'alice' }));
 * const bob = new Matchmaker(new MemoryStrategy({ hub, userId: 'bob' }));
 * await alice.start();
 * await bob.start(); // both now receive `matched`
 * ```
 */
export class MemoryMatchmakingHub {
  readonly #env: Environment;
  readonly #ttlMs: number;
  readonly #tickets = new Map<string, Ticket>();
  /** Waiting user ids per pool, oldest first. */
  readonly #pools = new Map<string, string[]>();
  /** The last match of each user, so a cancel that lost the race can return it. */
  readonly #lastMatch = new Map<string, MatchInfo>();
  #matchCount = 0;

  constructor(options: MemoryMatchmakingHubOptions = {}) {
    this.#env = resolveEnvironment(options.environment);
    this.#ttlMs = options.ticketTtlMs ?? 300_000;
  }

  /** Number of open tickets. */
  get waiting(): number {
    return this.#tickets.size;
  }

  /** Number of matches made so far. */
  get matchCount(): number {
    return this.#matchCount;
  }

  /**
   * Open a ticket for `userId`, or attach to the user's open ticket (a second tab). Pairs at once with the
   * oldest waiting ticket of the same pool.
   */
  join(userId: string, criteria: SearchCriteria, watcher: MemoryWatcher): HubJoinResult {
    const existing = this.#tickets.get(userId);
    if (existing) {
      existing.watchers.push(watcher);
      return { status: 'searching' };
    }
    this.#lastMatch.delete(userId);
    const pool = criteriaPoolKey(criteria);
    const queue = this.#pools.get(pool) ?? [];
    const partnerId = queue.shift();
    if (partnerId !== undefined) {
      const partner = this.#tickets.get(partnerId)!;
      this.#close(partner);
      const match: MatchInfo = Object.freeze({
        matchId: randomUuid(this.#env.random),
        userIds: Object.freeze([partnerId, userId]) as readonly [string, string],
        createdAt: new Date(this.#env.clock.now()).toISOString(),
        strategy: 'memory',
        criteria,
      });
      this.#matchCount += 1;
      this.#lastMatch.set(partnerId, match);
      this.#lastMatch.set(userId, match);
      this.#deliver(partner.watchers, (w) => w.listener.matched(w.searchId, { match, userId: partnerId }));
      return { status: 'matched', match };
    }
    const ticket: Ticket = { userId, criteria, pool, watchers: [watcher], expiry: undefined };
    ticket.expiry = this.#env.timers.setTimeout(() => this.#expire(userId), this.#ttlMs);
    this.#tickets.set(userId, ticket);
    queue.push(userId);
    this.#pools.set(pool, queue);
    return { status: 'searching' };
  }

  /** Withdraw the user's ticket. Tells the user's other strategies with reason `user`. */
  cancel(userId: string, searchId: string): HubCancelResult {
    const ticket = this.#tickets.get(userId);
    if (!ticket) {
      const match = this.#lastMatch.get(userId);
      return match ? { status: 'matched', match } : { status: 'not_searching' };
    }
    this.#close(ticket);
    this.#removeFromPool(ticket);
    const others = ticket.watchers.filter((w) => w.searchId !== searchId);
    this.#deliver(others, (w) => w.listener.ended(w.searchId, 'user'));
    return { status: 'cancelled' };
  }

  /** Stop delivering to one strategy's search without touching the ticket. */
  detach(userId: string, searchId: string): void {
    const ticket = this.#tickets.get(userId);
    if (!ticket) return;
    const index = ticket.watchers.findIndex((w) => w.searchId === searchId);
    if (index >= 0) ticket.watchers.splice(index, 1);
  }

  /** Drop every ticket and timer. */
  clear(): void {
    for (const ticket of this.#tickets.values()) this.#close(ticket);
    this.#pools.clear();
    this.#lastMatch.clear();
  }

  #expire(userId: string): void {
    const ticket = this.#tickets.get(userId);
    if (!ticket) return;
    ticket.expiry = undefined;
    this.#close(ticket);
    this.#removeFromPool(ticket);
    this.#deliver(ticket.watchers, (w) => w.listener.ended(w.searchId, 'expired'));
  }

  #close(ticket: Ticket): void {
    if (ticket.expiry !== undefined) this.#env.timers.clearTimeout(ticket.expiry);
    ticket.expiry = undefined;
    this.#tickets.delete(ticket.userId);
  }

  #removeFromPool(ticket: Ticket): void {
    const queue = this.#pools.get(ticket.pool);
    if (!queue) return;
    const index = queue.indexOf(ticket.userId);
    if (index >= 0) queue.splice(index, 1);
    if (queue.length === 0) this.#pools.delete(ticket.pool);
  }

  #deliver(watchers: readonly MemoryWatcher[], send: (watcher: MemoryWatcher) => void): void {
    const copy = [...watchers];
    queueMicrotask(() => {
      for (const watcher of copy) send(watcher);
    });
  }
}
