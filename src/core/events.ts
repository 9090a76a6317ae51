import type { MatchmakingError } from './errors';
import type { CancelReason, MatchForUser, MatchmakerSnapshot, SearchInfo, StrategyKind } from './types';

/** The backend holds the search and is looking for a partner. */
export interface SearchingEvent {
  readonly type: 'searching';
  readonly search: SearchInfo;
  readonly strategy: StrategyKind;
}

/** A partner was found. Both users receive the same `matchId`. */
export interface MatchedEvent {
  readonly type: 'matched';
  readonly search: SearchInfo;
  readonly match: MatchForUser;
}

/** The search ended without a match. No `matched` event follows for this search. */
export interface CancelledEvent {
  readonly type: 'cancelled';
  readonly search: SearchInfo;
  readonly reason: CancelReason;
  /** Present when `reason` is `error` or `rate_limited`. */
  readonly error?: MatchmakingError;
}

/**
 * Something went wrong. `fatal: true` means the search (or the `start()` call) ended because of it; a
 * `cancelled` event with reason `error` follows when a running search ended. `fatal: false` means the
 * strategy recovered or is retrying (e.g. a dropped socket it is reconnecting).
 */
export interface ErrorEvent {
  readonly type: 'error';
  readonly error: MatchmakingError;
  readonly fatal: boolean;
}

/**
 * Advice from the strategy that changes no state: typically a plan quota the project is about to exceed (the
 * presence tiers' quota guard), so the app can slow down or switch tier before Supabase stops its channels.
 *
 * @remarks
 * Added in 0.2 (additive). `code` is stable per strategy (e.g. `quota_presence_rate`); `details` holds the
 * figures behind the warning and is safe to log.
 */
export interface WarningEvent {
  readonly type: 'warning';
  /** What the warning is about, e.g. `quota_presence_rate`. Branch on this, never on `message`. */
  readonly code: string;
  /** Human-readable explanation, saying what to do about it. */
  readonly message: string;
  /** The figures behind the warning (estimates, limits, plan), safe to log. */
  readonly details: Readonly<Record<string, unknown>>;
}

/** The snapshot changed. Fires after the specific event that caused the change. */
export interface StateEvent {
  readonly type: 'state';
  readonly snapshot: MatchmakerSnapshot;
  readonly previous: MatchmakerSnapshot;
}

/**
 * The events a {@link Matchmaker} emits, identical in shape for every tier.
 *
 * @remarks
 * Order, for one search:
 * 1. `start()` → `state` (`starting`).
 * 2. The backend holds the search → `searching`, then `state` (`searching`).
 * 3. Exactly one ending: `matched` then `state` (`matched`); or `cancelled` then `state` (`cancelled`).
 *    A failed `start()` gives `error` (fatal) then `state` (`error`) instead of 2 and 3.
 *
 * When an event fires, {@link Matchmaker.getSnapshot} already returns the new state. Store subscribers
 * ({@link Matchmaker.subscribe}) are notified after the `state` event. Non-fatal `error` events and `warning`
 * events may come at any time and change no state.
 *
 * @example
 * ```ts
 * matchmaker.on('matched', ({ match }) => router.push(`/chat/${match.matchId}`));
 * matchmaker.on('cancelled', ({ reason }) => toast(`Search ended: ${reason}`));
 * ```
 */
export interface MatchmakerEvents {
  /** The backend holds the search. */
  searching: (event: SearchingEvent) => void;
  /** A partner was found. */
  matched: (event: MatchedEvent) => void;
  /** The search ended without a match. */
  cancelled: (event: CancelledEvent) => void;
  /** An error occurred; see {@link ErrorEvent.fatal}. */
  error: (event: ErrorEvent) => void;
  /** Advice from the strategy (e.g. a quota about to be exceeded); changes no state. */
  warning: (event: WarningEvent) => void;
  /** The snapshot changed. */
  state: (event: StateEvent) => void;
}

/** Union of every event object. */
export type MatchmakerEvent = Parameters<MatchmakerEvents[keyof MatchmakerEvents]>[0];
