import type { Logger } from '../core/environment';
import type { AuthOptions } from './auth';
import type { WideningOptions } from './keys';
import type { PgPoolLike } from './MatchPersister';
import type { RateLimit } from './RateLimiter';
import type { RedisClient } from './RedisQueue';

/**
 * Where the queue lives: a single Redis (`url`), a Redis Cluster (`cluster` seed nodes), or clients you built
 * (`client`, and optionally a separate `subscriber`; the server does not close clients it did not create).
 */
export type RedisConnectionOptions =
  | { readonly url: string }
  | { readonly cluster: readonly string[] }
  | { readonly client: RedisClient; readonly subscriber?: RedisClient };

/** Postgres persistence of matches. */
export interface PersistenceOptions {
  /** Connection string of the database holding the `matchmaker` schema (the queue tier's migration). */
  readonly databaseUrl?: string;
  /** A pool you manage instead of `databaseUrl` (not closed by the server). */
  readonly pool?: PgPoolLike;
  /** @defaultValue `'matchmaker.matches'` */
  readonly table?: string;
  /** Most matches per INSERT. @defaultValue 200 */
  readonly batchSize?: number;
  /** Pause between polls of the match streams when idle, in ms. @defaultValue 250 */
  readonly pollIntervalMs?: number;
  /** Matches a dead node left unwritten this long are taken over, in ms. @defaultValue 30000 */
  readonly claimIdleMs?: number;
  /** Longest pause between retries while Postgres fails, in ms. @defaultValue 5000 */
  readonly maxRetryDelayMs?: number;
}

/**
 * Options of {@link MatchmakingServer}. Every option can also come from the environment (see
 * {@link serverOptionsFromEnv}); explicit options win.
 */
export interface MatchmakingServerOptions {
  /** TCP port; 0 picks a free one. @defaultValue 8787 (env `MATCHMAKER_PORT`) */
  readonly port?: number;
  /** Interface to bind. @defaultValue `'0.0.0.0'` (env `MATCHMAKER_HOST`) */
  readonly host?: string;
  /** WebSocket path. @defaultValue `'/v1/matchmaking'` (env `MATCHMAKER_PATH`) */
  readonly path?: string;
  /** How access tokens are verified (env `SUPABASE_JWT_SECRET`, `MATCHMAKER_JWKS_URL`, `MATCHMAKER_JWT_AUDIENCE`, `MATCHMAKER_JWT_ISSUER`). */
  readonly auth?: AuthOptions;
  /** @defaultValue `{ url: 'redis://127.0.0.1:6379' }` (env `MATCHMAKER_REDIS_URL`/`REDIS_URL`, or `MATCHMAKER_REDIS_CLUSTER` = comma-separated `host:port` seeds) */
  readonly redis?: RedisConnectionOptions;
  /** Prefix of every Redis key and channel; nodes sharing a queue must share it. No braces. @defaultValue `'matchmaker:'` (env `MATCHMAKER_KEY_PREFIX`) */
  readonly keyPrefix?: string;
  /** Number of hash-tagged buckets pools are spread over; nodes sharing a queue must agree. @defaultValue 64 (env `MATCHMAKER_SHARDS`) */
  readonly shards?: number;
  /** How long a ticket waits before it expires (reason `expired`). @defaultValue 300000 (env `MATCHMAKER_TICKET_TTL_MS`) */
  readonly ticketTtlMs?: number;
  /** How long a ticket nobody watches keeps its place for its user to reconnect (then `disconnected`). @defaultValue 30000 (env `MATCHMAKER_RESUME_GRACE_MS`) */
  readonly resumeGraceMs?: number;
  /**
   * How long an ended ticket's outcome is kept for late readers (resume, cancel). Must exceed 5 s. On a Redis
   * Cluster, at least `ticketTtlMs` + 5 s lets the nodes release user records lazily (fewer script calls per match,
   * see docs/service.md). @defaultValue 600000
   */
  readonly endedRetentionMs?: number;
  /** Widening of criteria after a wait, or `false`. Nodes sharing a queue must agree. @defaultValue false (env `MATCHMAKER_WIDEN_AFTER_MS` with `MATCHMAKER_WIDEN_DROP` = comma-separated keys) */
  readonly widening?: WideningOptions | false;
  /** Period of the sweep (expiry, disconnects, widening, leftover pairs), run by one node at a time. @defaultValue 1000 */
  readonly sweepIntervalMs?: number;
  /** A node silent this long is dead: its tickets start their grace window. @defaultValue 15000 */
  readonly nodeTimeoutMs?: number;
  /** Clients send a heartbeat this often; connections silent 2.5 times as long are closed. @defaultValue 25000 */
  readonly heartbeatIntervalMs?: number;
  /** Largest frame answered normally; larger ones get a `frame_too_large` error, and 16 times larger ones close the socket. @defaultValue 16384 (room for the largest valid criteria and a large access token) */
  readonly maxFrameBytes?: number;
  /** Per-user limit on joins (per node), or `false`. @defaultValue `{ perSecond: 2, burst: 10 }` */
  readonly joinRateLimit?: RateLimit | false;
  /** Refuse WebSocket upgrades beyond this many connections. @defaultValue unlimited */
  readonly maxConnections?: number;
  /** Write every match to Postgres, or `false`. @defaultValue enabled when a database URL is configured (env `MATCHMAKER_DATABASE_URL`/`DATABASE_URL`) */
  readonly persistence?: PersistenceOptions | false;
  /** How long `close()` waits for requests in flight and for the persister. @defaultValue 10000 */
  readonly drainTimeoutMs?: number;
  /** This node's id (unique per process). @defaultValue a random UUID */
  readonly nodeId?: string;
  /** Structured logger. @defaultValue silent */
  readonly logger?: Logger;
  /** Prefix of the Prometheus metric names. @defaultValue `'matchmaker_'` */
  readonly metricsPrefix?: string;
  /** Environment to read defaults from. @defaultValue `process.env` */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/** Options after defaults, as the server uses them. @internal */
export interface ResolvedServerOptions {
  readonly port: number;
  readonly host: string;
  readonly path: string;
  readonly auth: AuthOptions;
  readonly redis: RedisConnectionOptions;
  readonly keyPrefix: string;
  readonly shards: number;
  readonly ticketTtlMs: number;
  readonly resumeGraceMs: number;
  readonly endedRetentionMs: number;
  readonly widening: WideningOptions | undefined;
  readonly sweepIntervalMs: number;
  readonly nodeTimeoutMs: number;
  readonly heartbeatIntervalMs: number;
  readonly maxFrameBytes: number;
  readonly joinRateLimit: RateLimit | undefined;
  readonly maxConnections: number;
  readonly persistence: PersistenceOptions | undefined;
  readonly drainTimeoutMs: number;
  readonly metricsPrefix: string;
}

/** A configuration problem; the message says what to change. */
export class ServerConfigError extends Error {
  override readonly name = 'ServerConfigError';
}

function list(value: string | undefined): string[] | undefined {
  const items = value
    ?.split(',')
    .map((item) => item.trim())
    .filter((item) => item.length > 0);
  return items && items.length > 0 ? items : undefined;
}

function int(env: Readonly<Record<string, string | undefined>>, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) {
    throw new ServerConfigError(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}.`);
  }
  return value;
}

/**
 * Server options read from environment variables (only those that are set).
 *
 * | Variable | Option |
 * | --- | --- |
 * | `MATCHMAKER_PORT`, `MATCHMAKER_HOST`, `MATCHMAKER_PATH` | `port`, `host`, `path` |
 * | `SUPABASE_JWT_SECRET` (or `MATCHMAKER_JWT_SECRET`), `MATCHMAKER_JWKS_URL` | `auth.jwtSecret`, `auth.jwksUrl` |
 * | `MATCHMAKER_JWT_AUDIENCE`, `MATCHMAKER_JWT_ISSUER` (comma-separated) | `auth.audience`, `auth.issuer` |
 * | `MATCHMAKER_REDIS_URL` (or `REDIS_URL`), `MATCHMAKER_REDIS_CLUSTER` | `redis` |
 * | `MATCHMAKER_DATABASE_URL` (or `DATABASE_URL`) | `persistence.databaseUrl` |
 * | `MATCHMAKER_KEY_PREFIX`, `MATCHMAKER_SHARDS` | `keyPrefix`, `shards` |
 * | `MATCHMAKER_TICKET_TTL_MS`, `MATCHMAKER_RESUME_GRACE_MS` | `ticketTtlMs`, `resumeGraceMs` |
 * | `MATCHMAKER_WIDEN_AFTER_MS`, `MATCHMAKER_WIDEN_DROP` | `widening` |
 * | `MATCHMAKER_SWEEP_INTERVAL_MS`, `MATCHMAKER_NODE_TIMEOUT_MS` | `sweepIntervalMs`, `nodeTimeoutMs` |
 * | `MATCHMAKER_MAX_FRAME_BYTES`, `MATCHMAKER_MAX_CONNECTIONS` | `maxFrameBytes`, `maxConnections` |
 * | `MATCHMAKER_NODE_ID` | `nodeId` |
 */
export function serverOptionsFromEnv(
  env: Readonly<Record<string, string | undefined>> = process.env,
): MatchmakingServerOptions {
  const out: Record<string, unknown> = {};
  const set = (key: string, value: unknown) => {
    if (value !== undefined) out[key] = value;
  };
  set('port', int(env, 'MATCHMAKER_PORT'));
  set('host', env.MATCHMAKER_HOST || undefined);
  set('path', env.MATCHMAKER_PATH || undefined);
  const auth: Record<string, unknown> = {};
  const secret = env.MATCHMAKER_JWT_SECRET || env.SUPABASE_JWT_SECRET;
  if (secret) auth.jwtSecret = secret;
  if (env.MATCHMAKER_JWKS_URL) auth.jwksUrl = env.MATCHMAKER_JWKS_URL;
  const audience = list(env.MATCHMAKER_JWT_AUDIENCE);
  if (audience) auth.audience = audience;
  const issuer = list(env.MATCHMAKER_JWT_ISSUER);
  if (issuer) auth.issuer = issuer;
  if (Object.keys(auth).length > 0) out.auth = auth;
  const cluster = list(env.MATCHMAKER_REDIS_CLUSTER);
  const redisUrl = env.MATCHMAKER_REDIS_URL || env.REDIS_URL;
  if (cluster) out.redis = { cluster };
  else if (redisUrl) out.redis = { url: redisUrl };
  const databaseUrl = env.MATCHMAKER_DATABASE_URL || env.DATABASE_URL;
  if (databaseUrl) out.persistence = { databaseUrl };
  set('keyPrefix', env.MATCHMAKER_KEY_PREFIX || undefined);
  set('shards', int(env, 'MATCHMAKER_SHARDS'));
  set('ticketTtlMs', int(env, 'MATCHMAKER_TICKET_TTL_MS'));
  set('resumeGraceMs', int(env, 'MATCHMAKER_RESUME_GRACE_MS'));
  const widenAfter = int(env, 'MATCHMAKER_WIDEN_AFTER_MS');
  const widenDrop = list(env.MATCHMAKER_WIDEN_DROP);
  if (widenAfter !== undefined && widenDrop) out.widening = { afterMs: widenAfter, drop: widenDrop };
  set('sweepIntervalMs', int(env, 'MATCHMAKER_SWEEP_INTERVAL_MS'));
  set('nodeTimeoutMs', int(env, 'MATCHMAKER_NODE_TIMEOUT_MS'));
  set('maxFrameBytes', int(env, 'MATCHMAKER_MAX_FRAME_BYTES'));
  set('maxConnections', int(env, 'MATCHMAKER_MAX_CONNECTIONS'));
  set('nodeId', env.MATCHMAKER_NODE_ID || undefined);
  return out as MatchmakingServerOptions;
}

function positive(name: string, value: number, min = 1): number {
  if (!Number.isFinite(value) || value < min) {
    throw new ServerConfigError(`${name} must be a number of at least ${min}, got ${String(value)}.`);
  }
  return value;
}

/** Merge explicit options over the environment and apply defaults, validating everything. @internal */
export function resolveServerOptions(options: MatchmakingServerOptions): ResolvedServerOptions {
  const fromEnv = serverOptionsFromEnv(options.env ?? process.env);
  const o = { ...fromEnv, ...options };
  const auth = o.auth ?? {};
  if (!auth.jwtSecret && !auth.jwksUrl) {
    throw new ServerConfigError(
      'Set auth.jwtSecret (the Supabase project JWT secret, env SUPABASE_JWT_SECRET) or auth.jwksUrl (env MATCHMAKER_JWKS_URL) so the server can verify access tokens.',
    );
  }
  const keyPrefix = o.keyPrefix ?? 'matchmaker:';
  if (/[{}]/.test(keyPrefix)) {
    throw new ServerConfigError(
      `keyPrefix must not contain braces (they are Redis Cluster hash tags): ${keyPrefix}`,
    );
  }
  const shards = positive('shards', o.shards ?? 64);
  if (!Number.isInteger(shards) || shards > 16_384) {
    throw new ServerConfigError(`shards must be an integer from 1 to 16384, got ${shards}.`);
  }
  const widening = o.widening === false || o.widening === undefined ? undefined : o.widening;
  if (widening) {
    positive('widening.afterMs', widening.afterMs);
    if (!Array.isArray(widening.drop) || widening.drop.some((key) => typeof key !== 'string')) {
      throw new ServerConfigError(
        'widening.drop must be the list of criteria keys that may be dropped, in order.',
      );
    }
  }
  const endedRetentionMs = positive('endedRetentionMs', o.endedRetentionMs ?? 600_000, 5_001);
  const limit = o.joinRateLimit === false ? undefined : (o.joinRateLimit ?? { perSecond: 2, burst: 10 });
  if (limit) {
    positive('joinRateLimit.perSecond', limit.perSecond, Number.MIN_VALUE);
    positive('joinRateLimit.burst', limit.burst);
  }
  const port = o.port ?? 8787;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new ServerConfigError(`port must be an integer from 0 to 65535, got ${port}.`);
  }
  const path = o.path ?? '/v1/matchmaking';
  if (!path.startsWith('/')) throw new ServerConfigError(`path must start with "/", got ${path}.`);
  return {
    port,
    host: o.host ?? '0.0.0.0',
    path,
    auth,
    redis: o.redis ?? { url: 'redis://127.0.0.1:6379' },
    keyPrefix,
    shards,
    ticketTtlMs: positive('ticketTtlMs', o.ticketTtlMs ?? 300_000, 1_000),
    resumeGraceMs: positive('resumeGraceMs', o.resumeGraceMs ?? 30_000, 0),
    endedRetentionMs,
    widening,
    sweepIntervalMs: positive('sweepIntervalMs', o.sweepIntervalMs ?? 1_000, 10),
    nodeTimeoutMs: positive('nodeTimeoutMs', o.nodeTimeoutMs ?? 15_000, 100),
    heartbeatIntervalMs: positive('heartbeatIntervalMs', o.heartbeatIntervalMs ?? 25_000, 100),
    maxFrameBytes: positive('maxFrameBytes', o.maxFrameBytes ?? 16_384, 256),
    joinRateLimit: limit,
    maxConnections:
      o.maxConnections === undefined
        ? Number.POSITIVE_INFINITY
        : positive('maxConnections', o.maxConnections),
    persistence:
      o.persistence && (o.persistence.pool || o.persistence.databaseUrl) ? o.persistence : undefined,
    drainTimeoutMs: positive('drainTimeoutMs', o.drainTimeoutMs ?? 10_000, 0),
    metricsPrefix: o.metricsPrefix ?? 'matchmaker_',
  };
}
