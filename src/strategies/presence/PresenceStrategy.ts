import type {
  CancelOutcome,
  MatchmakingStrategy,
  SearchOutcome,
  StrategyListener,
} from '../../core/MatchmakingStrategy';
import type { SearchInfo } from '../../core/types';
import { PresenceEngine, type PresenceStats } from './PresenceEngine';
import { channelNameOption, engineOptions, type PresenceCommonOptions } from './presenceOptions';
import type { QuotaEstimate } from './quotaGuard';

/** Options for {@link PresenceStrategy}. */
export interface PresenceStrategyOptions extends PresenceCommonOptions {
  /** The one presence channel every searcher joins. @defaultValue 'buddy-matchmaking' */
  readonly channel?: string;
}

/**
 * The presence tier (design v1): every searcher is present in one Realtime channel, and the searchers pair
 * themselves with a deterministic rule, so there is no server code to run.
 *
 * @remarks
 * Each searcher tracks `{ user_id, rank_us, criteria }`; the rank is its search start in database time, or
 * just after the newest member present when it (re)enters a channel, so arrivals are appended. Every client
 * derives the same pairs from the presence state alone: per pool, sorted by (rank, user id), 1-2, 3-4, ...;
 * the first of each pair claims the match through the race-safe `matchmaker_presence_claim` RPC once the pair
 * has been stable for `settleMs`. So normally exactly one client claims each pair. When a searcher leaves,
 * its pair-mate (most likely its match) untracks at once, before it checks; the two leaves cancel out, so no
 * other pair shifts. If it is still searching, it tracks again at the end. The database notifies both users on their private topic; each treats the
 * notification as a hint and confirms it with `matchmaker_presence_state`, also after every reconnect and
 * whenever its pair-mate leaves, so a lost or forged broadcast never loses or fakes a match.
 *
 * Costs (see docs/presence-capacity.md): every track and leave reaches every member, about `4N + 4` presence
 * events per match with N searchers in the channel. Supabase's Free plan allows 20 presence events/s, so
 * with 200 searchers it sustains about 0.025 matches/s. Use `quota` to be warned before the limit, or the
 * sharded or queue tier beyond it.
 *
 * Requires the shipped migrations; the user must be signed in. One strategy per Supabase client.
 *
 * @example
 * ```ts
 * const matchmaker = new Matchmaker(new PresenceStrategy({ supabase, quota: 'free' }));
 * // or: createMatchmaker({ strategy: 'presence', supabase })
 * ```
 */
export class PresenceStrategy implements MatchmakingStrategy {
  readonly kind = 'presence' as const;
  readonly #engine: PresenceEngine;

  constructor(options: PresenceStrategyOptions) {
    const channel = channelNameOption(options?.channel, 'buddy-matchmaking', 'channel');
    this.#engine = new PresenceEngine(
      engineOptions(
        options,
        {
          kind: 'presence',
          shards: undefined,
          channelName: () => channel,
          rotateAfterMs: undefined,
          placement: 'directed',
        },
        'presence',
      ),
    );
  }

  /** The quota guard's current estimate of the project's Realtime load, or undefined without `quota`. */
  quotaEstimate(): QuotaEstimate | undefined {
    return this.#engine.quotaEstimate();
  }

  /** What this client did so far: claims won and lost, reconciliations. */
  get stats(): PresenceStats {
    return this.#engine.stats;
  }

  search(search: SearchInfo, listener: StrategyListener): Promise<SearchOutcome> {
    return this.#engine.search(search, listener);
  }

  cancel(searchId: string): Promise<CancelOutcome> {
    return this.#engine.cancel(searchId);
  }

  close(): Promise<void> {
    return this.#engine.close();
  }
}
