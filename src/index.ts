/**
 * supabase-matchmaker: pair people who are searching at the same time, from a Presence channel to a Postgres
 * queue to a Redis service, behind one API.
 *
 * @packageDocumentation
 */

export type {
  CustomMatchmakerConfig,
  MatchmakerConfig,
  MemoryMatchmakerConfig,
} from './core/createMatchmaker';
export { AVAILABLE_STRATEGIES, createMatchmaker } from './core/createMatchmaker';
export type { Clock, Environment, Logger, TimerHandle, Timers } from './core/environment';
// Environment injection
export { defaultTimers, silentLogger } from './core/environment';
export type { MatchmakingErrorOptions } from './core/errors';
// Errors
export { isMatchmakingError, MatchmakingError, MatchmakingErrorCode } from './core/errors';
// Events
export type {
  CancelledEvent,
  ErrorEvent,
  MatchedEvent,
  MatchmakerEvent,
  MatchmakerEvents,
  SearchingEvent,
  StateEvent,
} from './core/events';
export type { MatchmakerOptions, SnapshotListener } from './core/Matchmaker';
// Matchmaker and factory
export { Matchmaker } from './core/Matchmaker';
// Strategy contract (for strategy authors)
export type {
  CancelOutcome,
  MatchmakingStrategy,
  SearchOutcome,
  StrategyListener,
  StrategyMatch,
} from './core/MatchmakingStrategy';
// State and data
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
} from './strategies/memory/MemoryMatchmakingHub';
// In-memory reference strategy
export { MemoryMatchmakingHub } from './strategies/memory/MemoryMatchmakingHub';
export type { MemoryStrategyOptions } from './strategies/memory/MemoryStrategy';
export { MemoryStrategy } from './strategies/memory/MemoryStrategy';
export type {
  QueueNotifyMode,
  QueuePollOptions,
  QueueStrategyOptions,
} from './strategies/queue/QueueStrategy';
// Queue tier
export { QueueStrategy } from './strategies/queue/QueueStrategy';

// Structural Supabase client types the Supabase tiers accept
export type {
  BroadcastMessageLike,
  ChannelOptionsLike,
  ChannelStatus,
  PostgresChangePayloadLike,
  PostgrestErrorLike,
  RealtimeChannelLike,
  RpcResponseLike,
  SupabaseLike,
} from './strategies/supabaseLike';
