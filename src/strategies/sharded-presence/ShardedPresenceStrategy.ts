import { MatchmakingError, MatchmakingErrorCode } from '../../core/errors';
import type {
  CancelOutcome,
  MatchmakingStrategy,
  SearchOutcome,
  StrategyListener,
} from '../../core/MatchmakingStrategy';
import type { SearchInfo } from '../../core/types';
import { PresenceEngine, type PresenceStats } from '../presence/PresenceEngine';
import {
  channelNameOption,
  engineOptions,
  numberOption,
  type PresenceCommonOptions,
} from '../presence/presenceOptions';
import type { QuotaEstimate } from '../presence/quotaGuard';

/**
 * Where a searcher goes after `rotateAfterMs` without a match.
 * - `directed` (default): asks the database (`matchmaker_presence_move`) for the shard whose lone searcher of
 *   the same criteria has waited longest, and stays when that is its own shard or nobody waits elsewhere. Lone
 *   searchers converge on one shard instead of chasing each other round the ring, and nobody moves for nothing.
 * - `round-robin`: the design's rule, shard `(current + 1) % shards`.
 */
export type ShardPlacement = 'directed' | 'round-robin';

/** Options for {@link ShardedPresenceStrategy}. */
export interface ShardedPresenceStrategyOptions extends PresenceCommonOptions {
  /** Number of shard channels S. @defaultValue 50 */
  readonly shards?: number;
  /** Shard channels are named `<channelPrefix>:<i>`. @defaultValue 'buddy-match' */
  readonly channelPrefix?: string;
  /** Look for a better shard after this long without a match. @defaultValue 5000 */
  readonly rotateAfterMs?: number;
  /** @defaultValue 'directed' */
  readonly placement?: ShardPlacement;
}

/**
 * The sharded presence tier (design v1.5): searchers spread over S presence channels, starting in a random
 * one, and pair within it exactly as in {@link PresenceStrategy}; one whose shard yields no match for
 * `rotateAfterMs` moves on.
 *
 * @remarks
 * A searcher is never present in two shards: it untracks (and waits for the server's answer) and leaves before
 * joining the next. Each visit is a new channel join with one track and one untrack, plus one of each per
 * step-aside; when a channel's 5 track/untrack per 30 s are used up, the move waits for the window rather than
 * leave its presence to the server's handling of the channel leave. Presence traffic per match drops from about `4N + 4` to `4N/S + 4`
 * events (see docs/presence-capacity.md); the quota guard scales what it sees in one shard by S.
 *
 * @example
 * ```ts
 * const matchmaker = createMatchmaker({ strategy: 'sharded-presence', supabase, shards: 50 });
 * ```
 */
export class ShardedPresenceStrategy implements MatchmakingStrategy {
  readonly kind = 'sharded-presence' as const;
  readonly #engine: PresenceEngine;

  constructor(options: ShardedPresenceStrategyOptions) {
    const shards = numberOption(options?.shards, 50, 'shards', 1);
    if (!Number.isInteger(shards) || shards > 1000) {
      throw new MatchmakingError(
        MatchmakingErrorCode.InvalidConfig,
        `shards must be an integer between 1 and 1000; got ${String(options?.shards)}.`,
        { details: { field: 'shards' } },
      );
    }
    const prefix = channelNameOption(options?.channelPrefix, 'buddy-match', 'channelPrefix');
    const rotateAfterMs = numberOption(options?.rotateAfterMs, 5000, 'rotateAfterMs', 100);
    const placement = options?.placement ?? 'directed';
    if (placement !== 'directed' && placement !== 'round-robin') {
      throw new MatchmakingError(
        MatchmakingErrorCode.InvalidConfig,
        `placement must be 'directed' or 'round-robin'; got ${JSON.stringify(placement)}.`,
        { details: { field: 'placement' } },
      );
    }
    this.#engine = new PresenceEngine(
      engineOptions(
        options,
        {
          kind: 'sharded-presence',
          shards,
          channelName: (shard) => `${prefix}:${shard ?? 0}`,
          rotateAfterMs,
          placement,
        },
        'sharded-presence',
      ),
    );
  }

  /** The shard the running search is in, or undefined when not searching. */
  get shard(): number | undefined {
    return this.#engine.currentShard;
  }

  /** What this client did so far: claims won and lost, shard moves, reconciliations. */
  get stats(): PresenceStats {
    return this.#engine.stats;
  }

  /** The quota guard's current estimate of the project's Realtime load, or undefined without `quota`. */
  quotaEstimate(): QuotaEstimate | undefined {
    return this.#engine.quotaEstimate();
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
