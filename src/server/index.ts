/**
 * `supabase-matchmaker/server`: the service tier's matchmaking server (Node only). A WebSocket server that
 * authenticates Supabase users and pairs them through a queue in Redis or a Redis Cluster, shared by any number of
 * nodes, writing every match to Postgres. Clients use `ServiceStrategy` from `supabase-matchmaker`.
 *
 * @packageDocumentation
 */

// Protocol (shared with the client)
export type {
  CancelFrame,
  CancelledFrame,
  ClientFrame,
  ErrorFrame,
  HeartbeatAckFrame,
  HeartbeatFrame,
  HelloFrame,
  JoinFrame,
  MatchedFrame,
  QueuedFrame,
  ServerFrame,
  ServiceEndReason,
  WelcomeFrame,
  WireMatch,
} from '../strategies/service/protocol';
export { SERVICE_PROTOCOL_VERSION, ServiceCloseCode, ServiceErrorCode } from '../strategies/service/protocol';
export type { AuthOptions, VerifiedToken } from './auth';
export { TokenRejectedError, TokenVerifier } from './auth';
export type { ServeCommandIo } from './cli';
// CLI
export { runServeCommand, SERVE_USAGE } from './cli';
export type { JsonLoggerOptions, LogLevel } from './jsonLogger';
export { createJsonLogger } from './jsonLogger';
export type { WideningOptions } from './keys';
export { type ChainStep, KeySpace } from './keys';
// Server
export { createMatchmakingServer, MatchmakingServer } from './MatchmakingServer';
// Persistence
export type { MatchPersisterOptions, PgPoolLike } from './MatchPersister';
export { MatchPersister } from './MatchPersister';
export type {
  MatchmakingServerOptions,
  PersistenceOptions,
  RedisConnectionOptions,
} from './options';
export { ServerConfigError, serverOptionsFromEnv } from './options';
export type { RateLimit } from './RateLimiter';
export type { RedisClient, StoredMatch } from './RedisQueue';
// Metrics and logs
export { ServiceMetrics } from './ServiceMetrics';
