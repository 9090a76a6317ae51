import type { MatchmakingError } from './errors';
import type { WarningEvent } from './events';
import type { CancelReason, MatchInfo, SearchInfo, StrategyKind } from './types';

/** A match together with the id of the user this strategy acts for. */
export interface StrategyMatch {
  readonly match: MatchInfo;
  /** The user this strategy searches for; must be one of `match.userIds`. */
  readonly userId: string;
}

/** What the backend answered to {@link MatchmakingStrategy.search}. */
export type SearchOutcome =
  | { readonly status: 'searching' }
  | ({ readonly status: 'matched' } & StrategyMatch);

/** What the backend answered to {@link MatchmakingStrategy.cancel}. */
export type CancelOutcome =
  /** The search is withdrawn; no match will be made for it. */
  | { readonly status: 'cancelled' }
  /** Pairing won the race: the search was already matched. */
  | ({ readonly status: 'matched' } & StrategyMatch)
  /** The backend holds no search for this user (it already ended). */
  | { readonly status: 'not_searching' };

/** A warning as a strategy reports it; the {@link Matchmaker} emits it as a {@link WarningEvent}. */
export type StrategyWarning = Omit<WarningEvent, 'type'>;

/**
 * How a strategy reports what the backend decided on its own. Calls for a search that is no longer current are
 * ignored, and a second ending for the same search is ignored, so strategies may deliver at least once (e.g. a
 * broadcast and a reconciliation poll reporting the same match).
 */
export interface StrategyListener {
  /** The backend paired the search. */
  matched(searchId: string, result: StrategyMatch): void;
  /** The backend ended the search without a match (expired, disconnected, cancelled in another tab, ...). */
  ended(
    searchId: string,
    reason: Exclude<CancelReason, 'timeout' | 'closed'>,
    error?: MatchmakingError,
  ): void;
  /** A problem the strategy recovered from or is retrying; changes no state. */
  error(error: MatchmakingError): void;
  /**
   * Advice that changes no state (e.g. a plan quota about to be exceeded). Optional, so listeners written
   * before it existed still type-check; strategies call it as `listener.warning?.(...)`.
   */
  warning?(warning: StrategyWarning): void;
}

/**
 * The contract every tier implements, in matchmaking terms.
 *
 * @remarks
 * A strategy owns its connections (channels, sockets, pools it created) and releases them in {@link close}. It
 * acts for one user, known from its own authentication (a Supabase session, a service token); several
 * strategies may act for the same user at once (two tabs), and the backend must then hold a single search for
 * that user and report its outcome to all of them. The {@link Matchmaker} drives a strategy: it never calls
 * `search` while a previous search of the same strategy is running, and it serialises `search`, `cancel` and
 * `close`.
 *
 * Errors are thrown as {@link MatchmakingError}s.
 *
 * @example A strategy that never finds anyone
 * ```ts
 * const lonely: MatchmakingStrategy = {
 *   kind: 'memory',
 *   async search() { return { status: 'searching' }; },
 *   async cancel() { return { status: 'cancelled' }; },
 *   async close() {},
 * };
 * ```
 */
export interface MatchmakingStrategy {
  /** Which tier this is; copied into events. */
  readonly kind: StrategyKind;
  /**
   * Ask the backend to find a partner. Resolves once the backend holds the search (or matched it at once).
   * Later outcomes go to `listener`.
   */
  search(search: SearchInfo, listener: StrategyListener): Promise<SearchOutcome>;
  /** Withdraw the search. Atomic against pairing: after `cancelled`, no match is made for it. */
  cancel(searchId: string): Promise<CancelOutcome>;
  /** Release every connection, channel and timer. Idempotent. */
  close(): Promise<void>;
}
