/**
 * `supabase-matchmaker serve`: runs one matchmaking service node until SIGTERM/SIGINT, then drains.
 *
 * @packageDocumentation
 */
import { parseArgs } from 'node:util';
import type { Logger } from '../core/environment';
import { createJsonLogger, type LogLevel } from './jsonLogger';
import { createMatchmakingServer, type MatchmakingServer } from './MatchmakingServer';
import { type MatchmakingServerOptions, ServerConfigError } from './options';

/** Usage text of the `serve` subcommand. */
export const SERVE_USAGE = `Usage: supabase-matchmaker serve [options]

Runs a matchmaking service node (WebSocket + /healthz + /metrics) until SIGTERM or SIGINT, then drains.
Every option also has an environment variable; flags win.

  --port <n>                  listen port (MATCHMAKER_PORT, default 8787; 0 = any)
  --host <addr>               bind address (MATCHMAKER_HOST, default 0.0.0.0)
  --path <path>               WebSocket path (MATCHMAKER_PATH, default /v1/matchmaking)
  --jwt-secret <secret>       HS256 secret (SUPABASE_JWT_SECRET; prefer the variable)
  --jwks-url <url>            JWKS for asymmetric tokens (MATCHMAKER_JWKS_URL)
  --audience <a,b>            accepted aud (MATCHMAKER_JWT_AUDIENCE, default authenticated)
  --issuer <a,b>              accepted iss (MATCHMAKER_JWT_ISSUER)
  --redis-url <url>           single Redis (MATCHMAKER_REDIS_URL or REDIS_URL, default redis://127.0.0.1:6379)
  --redis-cluster <h:p,...>   Redis Cluster seed nodes (MATCHMAKER_REDIS_CLUSTER)
  --key-prefix <prefix>       Redis key prefix shared by all nodes (MATCHMAKER_KEY_PREFIX, default matchmaker:)
  --shards <n>                hash-tag buckets, same on all nodes (MATCHMAKER_SHARDS, default 64)
  --database-url <url>        Postgres for match persistence (MATCHMAKER_DATABASE_URL or DATABASE_URL)
  --no-persistence            do not write matches to Postgres
  --ticket-ttl-ms <ms>        ticket lifetime (MATCHMAKER_TICKET_TTL_MS, default 300000)
  --resume-grace-ms <ms>      place kept for a disconnected user (MATCHMAKER_RESUME_GRACE_MS, default 30000)
  --widen-after-ms <ms>       widening step (MATCHMAKER_WIDEN_AFTER_MS), with
  --widen-drop <k1,k2>        criteria keys dropped in order (MATCHMAKER_WIDEN_DROP)
  --sweep-interval-ms <ms>    sweep period (MATCHMAKER_SWEEP_INTERVAL_MS, default 1000)
  --node-timeout-ms <ms>      dead-node detection (MATCHMAKER_NODE_TIMEOUT_MS, default 15000)
  --max-frame-bytes <n>       largest frame (MATCHMAKER_MAX_FRAME_BYTES, default 16384)
  --max-connections <n>       connection cap (MATCHMAKER_MAX_CONNECTIONS)
  --join-rate <per-second>    per-user join rate (default 2), with
  --join-burst <n>            per-user join burst (default 10)
  --drain-timeout-ms <ms>     graceful shutdown budget (default 10000)
  --node-id <id>              node id (MATCHMAKER_NODE_ID, default random)
  --log-level <level>         debug | info | warn | error (MATCHMAKER_LOG_LEVEL, default info)
  --help                      this text`;

/** Injectable process surroundings of {@link runServeCommand}. */
export interface ServeCommandIo {
  /** @defaultValue `process.env` */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Plain output (usage). @defaultValue `process.stdout` */
  readonly out?: (text: string) => void;
  /** Error output. @defaultValue `process.stderr` */
  readonly err?: (text: string) => void;
  /** Structured logger. @defaultValue JSON lines on stdout */
  readonly logger?: Logger;
  /** Signals that start a graceful shutdown. @defaultValue `['SIGTERM', 'SIGINT']` */
  readonly signals?: readonly NodeJS.Signals[];
  /** Called once the node listens (tests use it to learn the URL). */
  readonly onListening?: (server: MatchmakingServer) => void;
}

function number(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed < 0)
    throw new ServerConfigError(`--${flag} must be a non-negative number, got ${value}.`);
  return parsed;
}

function list(value: string | undefined): string[] | undefined {
  return value
    ?.split(',')
    .map((item) => item.trim())
    .filter(Boolean);
}

const LEVELS = new Set(['debug', 'info', 'warn', 'error']);

/**
 * Run the `serve` subcommand: parse `argv` (the arguments after `serve`), start a node, and resolve with the
 * process exit code once it has shut down (after SIGTERM/SIGINT): 0 after a clean drain, 1 when it could not
 * start, 2 for a usage error.
 *
 * @example The package's bin
 * ```ts
 * if (process.argv[2] === 'serve') process.exitCode = await runServeCommand(process.argv.slice(3));
 * ```
 */
export async function runServeCommand(argv: readonly string[], io: ServeCommandIo = {}): Promise<number> {
  const env = io.env ?? process.env;
  const out = io.out ?? ((text: string) => process.stdout.write(text));
  const err = io.err ?? ((text: string) => process.stderr.write(text));
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        path: { type: 'string' },
        'jwt-secret': { type: 'string' },
        'jwks-url': { type: 'string' },
        audience: { type: 'string' },
        issuer: { type: 'string' },
        'redis-url': { type: 'string' },
        'redis-cluster': { type: 'string' },
        'key-prefix': { type: 'string' },
        shards: { type: 'string' },
        'database-url': { type: 'string' },
        'no-persistence': { type: 'boolean' },
        'ticket-ttl-ms': { type: 'string' },
        'resume-grace-ms': { type: 'string' },
        'widen-after-ms': { type: 'string' },
        'widen-drop': { type: 'string' },
        'sweep-interval-ms': { type: 'string' },
        'node-timeout-ms': { type: 'string' },
        'max-frame-bytes': { type: 'string' },
        'max-connections': { type: 'string' },
        'join-rate': { type: 'string' },
        'join-burst': { type: 'string' },
        'drain-timeout-ms': { type: 'string' },
        'node-id': { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean' },
      },
    }));
  } catch (error) {
    err(`${(error as Error).message}\n\n${SERVE_USAGE}\n`);
    return 2;
  }
  if (values.help) {
    out(`${SERVE_USAGE}\n`);
    return 0;
  }
  const s = (name: string) => (typeof values[name] === 'string' ? (values[name] as string) : undefined);
  const level = s('log-level') ?? env.MATCHMAKER_LOG_LEVEL ?? 'info';
  if (!LEVELS.has(level)) {
    err(`--log-level must be debug, info, warn or error, got ${level}.\n`);
    return 2;
  }
  let options: Record<string, unknown>;
  try {
    options = { env };
    const set = (key: string, value: unknown) => {
      if (value !== undefined) options[key] = value;
    };
    set('port', number('port', s('port')));
    set('host', s('host'));
    set('path', s('path'));
    const auth: Record<string, unknown> = {};
    if (s('jwt-secret')) auth.jwtSecret = s('jwt-secret');
    if (s('jwks-url')) auth.jwksUrl = s('jwks-url');
    if (s('audience')) auth.audience = list(s('audience'));
    if (s('issuer')) auth.issuer = list(s('issuer'));
    if (Object.keys(auth).length > 0) {
      const envAuth: Record<string, unknown> = {};
      const secret = env.MATCHMAKER_JWT_SECRET || env.SUPABASE_JWT_SECRET;
      if (secret) envAuth.jwtSecret = secret;
      if (env.MATCHMAKER_JWKS_URL) envAuth.jwksUrl = env.MATCHMAKER_JWKS_URL;
      options.auth = { ...envAuth, ...auth };
    }
    if (s('redis-cluster')) options.redis = { cluster: list(s('redis-cluster')) };
    else if (s('redis-url')) options.redis = { url: s('redis-url') };
    set('keyPrefix', s('key-prefix'));
    set('shards', number('shards', s('shards')));
    if (values['no-persistence']) options.persistence = false;
    else if (s('database-url')) options.persistence = { databaseUrl: s('database-url') };
    set('ticketTtlMs', number('ticket-ttl-ms', s('ticket-ttl-ms')));
    set('resumeGraceMs', number('resume-grace-ms', s('resume-grace-ms')));
    const widenAfter = number('widen-after-ms', s('widen-after-ms'));
    const widenDrop = list(s('widen-drop'));
    if (widenAfter !== undefined || widenDrop !== undefined) {
      if (widenAfter === undefined || widenDrop === undefined) {
        throw new ServerConfigError('--widen-after-ms and --widen-drop go together.');
      }
      options.widening = { afterMs: widenAfter, drop: widenDrop };
    }
    set('sweepIntervalMs', number('sweep-interval-ms', s('sweep-interval-ms')));
    set('nodeTimeoutMs', number('node-timeout-ms', s('node-timeout-ms')));
    set('maxFrameBytes', number('max-frame-bytes', s('max-frame-bytes')));
    set('maxConnections', number('max-connections', s('max-connections')));
    const rate = number('join-rate', s('join-rate'));
    const burst = number('join-burst', s('join-burst'));
    if (rate !== undefined || burst !== undefined)
      options.joinRateLimit = { perSecond: rate ?? 2, burst: burst ?? 10 };
    set('drainTimeoutMs', number('drain-timeout-ms', s('drain-timeout-ms')));
    set('nodeId', s('node-id'));
  } catch (error) {
    err(`${(error as Error).message}\n`);
    return 2;
  }
  const logger =
    io.logger ?? createJsonLogger({ level: level as LogLevel, base: { service: 'supabase-matchmaker' } });
  options.logger = logger;

  let server: MatchmakingServer;
  try {
    server = await createMatchmakingServer(options as MatchmakingServerOptions);
  } catch (error) {
    logger.error('could not start the matchmaking server', { error });
    err(`supabase-matchmaker serve: ${(error as Error).message}\n`);
    return error instanceof ServerConfigError ? 2 : 1;
  }
  logger.info('listening', { url: server.url, http: server.httpUrl, nodeId: server.nodeId });
  io.onListening?.(server);

  const signals = io.signals ?? (['SIGTERM', 'SIGINT'] as const);
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      for (const s of signals) process.off(s, stop);
      logger.info('shutting down', { signal });
      resolve();
    };
    for (const signal of signals) process.once(signal, stop);
  });
  try {
    await server.close();
    return 0;
  } catch (error) {
    logger.error('shutdown failed', { error });
    return 1;
  }
}
