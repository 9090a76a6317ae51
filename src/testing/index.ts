/**
 * `supabase-matchmaker/testing`: a local Supabase-compatible stack (Postgres with Supabase's shape,
 * PostgREST's `/rpc`, Realtime) for tests and benchmarks.
 *
 * @packageDocumentation
 */

export {
  type CreateStackDatabaseOptions,
  createStackDatabase,
  DEFAULT_DATABASE_URL,
  type StackDatabase,
} from './database';
export type {
  ChangeColumn,
  ChannelExtension,
  ChannelPermissions,
  DatabaseBroadcast,
  JwtClaims,
  JwtFailureKind,
  RealtimeDatabaseBridge,
  RowChange,
} from './internal/contracts';
export {
  createJwtIssuer,
  isJwtError,
  JwtError,
  type JwtIssuer,
  type SignOptions,
  type UserTokenOptions,
} from './jwt';
export { REALTIME_PLANS, type RealtimeQuotas } from './realtime/quotas';
export {
  type RealtimeErrorDelays,
  RealtimeServer,
  type RealtimeServerOptions,
  type RealtimeTimers,
} from './realtime/RealtimeServer';
export { type DeliveryKind, diffCounters, StackCounters, type StackCountersSnapshot } from './StackCounters';
export {
  type CreateUserOptions,
  type LocalSupabase,
  type LocalSupabaseOptions,
  type LocalSupabasePlan,
  type LocalUser,
  startLocalSupabase,
} from './startLocalSupabase';
export { installSupabaseShape, type ShapeQueryable, SUPABASE_SHAPE_SQL } from './supabaseShape';
