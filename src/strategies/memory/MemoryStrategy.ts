import { MatchmakingError, MatchmakingErrorCode } from '../../core/errors';
import type {
  CancelOutcome,
  MatchmakingStrategy,
  SearchOutcome,
  StrategyListener,
} from '../../core/MatchmakingStrategy';
import type { SearchInfo } from '../../core/types';
import type { MemoryMatchmakingHub } from './MemoryMatchmakingHub';

/** Options for {@link MemoryStrategy}. */
export interface MemoryStrategyOptions {
  /** The shared in-process backend. */
  readonly hub: MemoryMatchmakingHub;
  /** The user this strategy searches for. */
  readonly userId: string;
}

/**
 * The in-memory reference strategy: same contract as the real tiers, no network. For unit tests of code built
 * on a {@link Matchmaker}, and as the reference the conformance suite checks every tier against.
 *
 * @example
 * ```ts
 * const hub = new MemoryMatchmakingHub();
 * const matchmaker = new Matchmaker(new MemoryStrategy({ hub, userId: 'alice' }));
 * ```
 */
export class MemoryStrategy implements MatchmakingStrategy {
  readonly kind = 'memory' as const;
  readonly #hub: MemoryMatchmakingHub;
  readonly #userId: string;
  #searchId: string | undefined;
  #closed = false;

  constructor(options: MemoryStrategyOptions) {
    if (typeof options?.userId !== 'string' || options.userId.length === 0) {
      throw new MatchmakingError(
        MatchmakingErrorCode.InvalidConfig,
        'MemoryStrategy needs a non-empty userId, e.g. new MemoryStrategy({ hub, userId: "alice" }).',
        { details: { field: 'userId' } },
      );
    }
    this.#hub = options.hub;
    this.#userId = options.userId;
  }

  async search(search: SearchInfo, listener: StrategyListener): Promise<SearchOutcome> {
    if (this.#closed)
      throw new MatchmakingError(MatchmakingErrorCode.Closed, 'This MemoryStrategy is closed.');
    this.#searchId = search.searchId;
    const result = this.#hub.join(this.#userId, search.criteria, { searchId: search.searchId, listener });
    if (result.status === 'matched') {
      this.#searchId = undefined;
      return { status: 'matched', match: result.match, userId: this.#userId };
    }
    return { status: 'searching' };
  }

  async cancel(searchId: string): Promise<CancelOutcome> {
    const result = this.#hub.cancel(this.#userId, searchId);
    if (this.#searchId === searchId) this.#searchId = undefined;
    return result.status === 'matched'
      ? { status: 'matched', match: result.match, userId: this.#userId }
      : result;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#searchId !== undefined) this.#hub.detach(this.#userId, this.#searchId);
    this.#searchId = undefined;
  }
}
