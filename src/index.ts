/**
 * supabase-matchmaker: pair people who are searching at the same time, from a Presence channel to a Postgres
 * queue to a Redis service, behind one API.
 *
 * Exports are listed by name (no barrels), grouped by the module that defines them. The Node-only parts live
 * in subpaths: `supabase-matchmaker/server` (the service tier's server), `supabase-matchmaker/testing` (the local
 * Supabase-compatible stack) and `supabase-matchmaker/migrations` (the SQL migration runner).
 *
 * @packageDocumentation
 */

export type {
  CustomMatchmakerConfig,
  MatchmakerConfig,
  MemoryMatchmakerConfig,
  PresenceMatchmakerConfig,
  QueueMatchmakerConfig,
  ServiceMatchmakerConfig,
  ShardedPresenceMatchmakerConfig,
} from './core/createMatchmaker';
export { AVAILABLE_STRATEGIES, createMatchmaker } from './core/createMatchmaker';
export type { Clock, Environment, Logger, TimerHandle, Timers } from './core/environment';
export { defaultTimers, silentLogger } from './core/environment';
export type { MatchmakingErrorOptions } from './core/errors';
export { isMatchmakingError, MatchmakingError, MatchmakingErrorCode } from './core/errors';
export type {
  CancelledEvent,
  ErrorEvent,
  MatchedEvent,
  MatchmakerEvent,
  MatchmakerEvents,
  SearchingEvent,
  StateEvent,
  WarningEvent,
} from './core/events';
export type { MatchmakerOptions, SnapshotListener } from './core/Matchmaker';
export { Matchmaker } from './core/Matchmaker';
export type {
  CancelOutcome,
  MatchmakingStrategy,
  SearchOutcome,
  StrategyListener,
  StrategyMatch,
  StrategyWarning,
} from './core/MatchmakingStrategy';
export type {
  CancelledSnapshot,
  CancelReason,
  ClosedSnapshot,
  CriteriaValue,
  ErrorSnapshot,
  IdleSnapshot,
  MatchedSnapshot,
  MatchForUser,
  MatchInfo,
  MatchmakerSnapshot,
  MatchmakerStatus,
  SearchCriteria,
  SearchInfo,
  SearchingSnapshot,
  StartingSnapshot,
  StartOptions,
  StrategyKind,
} from './core/types';
export type {
  HubCancelResult,
  HubJoinResult,
  MemoryMatchmakingHubOptions,
  MemoryWatcher,
} from './strategies/memory/MemoryMatchmakingHub';
export { MemoryMatchmakingHub } from './strategies/memory/MemoryMatchmakingHub';
export type { MemoryStrategyOptions } from './strategies/memory/MemoryStrategy';
export { MemoryStrategy } from './strategies/memory/MemoryStrategy';
export type { PresenceStats } from './strategies/presence/PresenceEngine';
export type { PresenceStrategyOptions } from './strategies/presence/PresenceStrategy';
export { PresenceStrategy } from './strategies/presence/PresenceStrategy';
export type { PresenceCommonOptions } from './strategies/presence/presenceOptions';
export type { ClaimLossReason } from './strategies/presence/presenceProtocol';
export type {
  PresencePlan,
  PresenceQuotaLimits,
  QuotaAction,
  QuotaEstimate,
  QuotaGuardOptions,
} from './strategies/presence/quotaGuard';
export {
  maxMatchesPerSecond,
  PRESENCE_PLAN_LIMITS,
  presenceEventsPerMatch,
  QuotaGuard,
  QuotaWarningCode,
} from './strategies/presence/quotaGuard';
export type {
  QueueNotifyMode,
  QueuePollOptions,
  QueueStrategyOptions,
} from './strategies/queue/QueueStrategy';
export { QueueStrategy } from './strategies/queue/QueueStrategy';
export type {
  ServiceStrategyOptions,
  WebSocketConstructorLike,
  WebSocketLike,
} from './strategies/service/ServiceStrategy';
export { ServiceStrategy } from './strategies/service/ServiceStrategy';
export type {
  ShardedPresenceStrategyOptions,
  ShardPlacement,
} from './strategies/sharded-presence/ShardedPresenceStrategy';
export { ShardedPresenceStrategy } from './strategies/sharded-presence/ShardedPresenceStrategy';
export type {
  BroadcastMessageLike,
  ChannelOptionsLike,
  ChannelStatus,
  PostgresChangePayloadLike,
  PostgrestErrorLike,
  PresenceJoinPayloadLike,
  PresenceLeavePayloadLike,
  PresenceMetaLike,
  RealtimeChannelLike,
  RpcResponseLike,
  SupabaseLike,
} from './strategies/supabaseLike';
