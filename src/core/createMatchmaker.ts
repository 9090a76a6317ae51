import { MemoryMatchmakingHub } from '../strategies/memory/MemoryMatchmakingHub';
import { MemoryStrategy } from '../strategies/memory/MemoryStrategy';
import { PresenceStrategy, type PresenceStrategyOptions } from '../strategies/presence/PresenceStrategy';
import { QueueStrategy, type QueueStrategyOptions } from '../strategies/queue/QueueStrategy';
import { ServiceStrategy, type ServiceStrategyOptions } from '../strategies/service/ServiceStrategy';
import {
  ShardedPresenceStrategy,
  type ShardedPresenceStrategyOptions,
} from '../strategies/sharded-presence/ShardedPresenceStrategy';
import { MatchmakingError, MatchmakingErrorCode } from './errors';
import { Matchmaker, type MatchmakerOptions } from './Matchmaker';
import type { MatchmakingStrategy } from './MatchmakingStrategy';

/** `createMatchmaker` config for the in-memory reference strategy (tests, demos, storybooks). */
export interface MemoryMatchmakerConfig extends MatchmakerOptions {
  readonly strategy: 'memory';
  /** The shared in-process backend; every matchmaker that should meet must get the same hub. */
  readonly hub: MemoryMatchmakingHub;
  /** The user this matchmaker searches for. */
  readonly userId: string;
}

/** `createMatchmaker` config for the queue tier ({@link QueueStrategy}). */
export interface QueueMatchmakerConfig extends MatchmakerOptions, Omit<QueueStrategyOptions, 'environment'> {
  readonly strategy: 'queue';
}

/** `createMatchmaker` config for the presence tier ({@link PresenceStrategy}). */
export interface PresenceMatchmakerConfig
  extends MatchmakerOptions,
    Omit<PresenceStrategyOptions, 'environment'> {
  readonly strategy: 'presence';
}

/** `createMatchmaker` config for the sharded presence tier ({@link ShardedPresenceStrategy}). */
export interface ShardedPresenceMatchmakerConfig
  extends MatchmakerOptions,
    Omit<ShardedPresenceStrategyOptions, 'environment'> {
  readonly strategy: 'sharded-presence';
}

/** `createMatchmaker` config for the service tier ({@link ServiceStrategy}). */
export interface ServiceMatchmakerConfig
  extends MatchmakerOptions,
    Omit<ServiceStrategyOptions, 'environment'> {
  readonly strategy: 'service';
}

/** `createMatchmaker` config for a strategy you built yourself (it must pass the conformance suite). */
export interface CustomMatchmakerConfig extends MatchmakerOptions {
  readonly strategy: MatchmakingStrategy;
}

/**
 * Configuration for {@link createMatchmaker}, discriminated on `strategy`.
 *
 * @remarks
 * Each tier adds its own variant (`'queue'`, `'presence'`, `'sharded-presence'`, `'service'`) as it ships; the
 * CHANGELOG lists which are available in each version.
 */
export type MatchmakerConfig =
  | PresenceMatchmakerConfig
  | ShardedPresenceMatchmakerConfig
  | QueueMatchmakerConfig
  | ServiceMatchmakerConfig
  | MemoryMatchmakerConfig
  | CustomMatchmakerConfig;

/** Strategy names {@link createMatchmaker} accepts in this version. */
export const AVAILABLE_STRATEGIES = ['presence', 'sharded-presence', 'queue', 'service', 'memory'] as const;

function isStrategyObject(value: unknown): value is MatchmakingStrategy {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as MatchmakingStrategy).search === 'function' &&
    typeof (value as MatchmakingStrategy).cancel === 'function' &&
    typeof (value as MatchmakingStrategy).close === 'function'
  );
}

/**
 * Create a {@link Matchmaker} for one of the tiers. Changing tier is changing `strategy` (and the options that
 * tier needs); events and snapshots stay the same.
 *
 * @throws {@link MatchmakingError} with code `invalid_config` when the config is wrong; the message says what to
 * change.
 *
 * @example Presence tier (no server code; free plan)
 * ```ts
 * const matchmaker = createMatchmaker({ strategy: 'presence', supabase, quota: 'free' });
 * ```
 *
 * @example Queue tier
 * ```ts
 * const matchmaker = createMatchmaker({ strategy: 'queue', supabase });
 * ```
 *
 * @example Service tier
 * ```ts
 * const matchmaker = createMatchmaker({
 *   strategy: 'service',
 *   url: 'wss://match.example.com',
 *   getAccessToken: async () => (await supabase.auth.getSession()).data.session?.access_token,
 * });
 * ```
 *
 * @example In-memory (tests)
 * ```ts
 * const hub = new MemoryMatchmakingHub();
 * const matchmaker = createMatchmaker({ strategy: 'memory', hub, userId: 'alice' });
 * ```
 */
export function createMatchmaker(config: MatchmakerConfig): Matchmaker {
  if (typeof config !== 'object' || config === null) {
    throw new MatchmakingError(
      MatchmakingErrorCode.InvalidConfig,
      "createMatchmaker needs a config object, e.g. createMatchmaker({ strategy: 'memory', hub, userId }).",
    );
  }
  const { strategy } = config;
  if (isStrategyObject(strategy)) return new Matchmaker(strategy, config);
  if (strategy === 'presence') {
    const presence = config as PresenceMatchmakerConfig;
    return new Matchmaker(new PresenceStrategy({ ...presence, environment: presence.environment }), config);
  }
  if (strategy === 'sharded-presence') {
    const sharded = config as ShardedPresenceMatchmakerConfig;
    return new Matchmaker(
      new ShardedPresenceStrategy({ ...sharded, environment: sharded.environment }),
      config,
    );
  }
  if (strategy === 'queue') {
    const queue = config as QueueMatchmakerConfig;
    return new Matchmaker(new QueueStrategy({ ...queue, environment: queue.environment }), config);
  }
  if (strategy === 'service') {
    const service = config as ServiceMatchmakerConfig;
    return new Matchmaker(new ServiceStrategy({ ...service, environment: service.environment }), config);
  }
  if (strategy === 'memory') {
    const memory = config as MemoryMatchmakerConfig;
    if (!(memory.hub instanceof MemoryMatchmakingHub)) {
      throw new MatchmakingError(
        MatchmakingErrorCode.InvalidConfig,
        "strategy 'memory' needs a hub: pass { hub: new MemoryMatchmakingHub() }, the same one to every matchmaker that should meet.",
        { details: { field: 'hub' } },
      );
    }
    return new Matchmaker(new MemoryStrategy({ hub: memory.hub, userId: memory.userId }), config);
  }
  throw new MatchmakingError(
    MatchmakingErrorCode.InvalidConfig,
    `Unknown strategy ${JSON.stringify(strategy)}. Use one of ${AVAILABLE_STRATEGIES.map((s) => `'${s}'`).join(', ')}, or pass an object implementing MatchmakingStrategy.`,
    { details: { field: 'strategy' } },
  );
}
