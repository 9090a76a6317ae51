/**
 * Throw-away databases of the queue benchmark: Supabase's shape plus either the queue tier's migrations (all of
 * them, or only the first, the design before the faster join) or the design's own SQL (`test/fixtures/seed-v2.sql`,
 * the baseline). Named `bench_q_<pid>_<random>`, dropped afterwards, also on Ctrl-C, and by the next run when the
 * process that created them died.
 *
 * @packageDocumentation
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { applyMigrations } from '../../src/migrations/applyMigrations';
import { MIGRATIONS } from '../../src/migrations/migrations.generated';
import { installSupabaseShape } from '../../src/testing/supabaseShape';
import { dropStaleBenchDatabases, withAdmin } from './calibration';
import { onInterrupt } from './cleanup';
import type { BenchConfig } from './config';

/** Prefix of the databases; the suffix is the creating process id and a random tag. */
export const QUEUE_DATABASE_PREFIX = 'bench_q_';

/** Version of the first queue migration: the design before `20261128000400_matchmaker_queue_faster_join`. */
export const FIRST_QUEUE_VERSION = '20261128000100';

/** First version not in a `lean` database: `20261128000800_matchmaker_queue_fewer_statements`. */
export const LEAN_BEFORE_VERSION = '20261128000800';

/** First version not in a `serial` database: `20261128000900_matchmaker_queue_parallel_batch`. */
export const PARALLEL_BATCH_VERSION = '20261128000900';

/**
 * What a database holds:
 * - `current`: every shipped migration (the queue tier as it ships now);
 * - `previous`: only the first queue migration (per-pool lock, helpers in SQL functions), for A B comparisons;
 * - `lean`: the migrations before `20261128000800_matchmaker_queue_fewer_statements` (session 3's shipped state);
 * - `serial`: the migrations before `20261128000900_matchmaker_queue_parallel_batch` (one batch worker per pool);
 * - `seed`: the design's Tier 2 SQL, verbatim (the baseline).
 */
export type QueueSchema = 'current' | 'previous' | 'lean' | 'serial' | 'seed';

/** A {@link QueueSchema}, or the queue tier's migrations before `before` (any shipped version). */
export type QueueDatabaseSchema = QueueSchema | { readonly before: string };

/** A throw-away database of the queue benchmark. */
export interface QueueDatabase {
  readonly name: string;
  readonly schema: QueueDatabaseSchema;
  /** A session for set-up and inspection (superuser). */
  readonly admin: pg.Client;
  /** A new session on this database (ended by {@link QueueDatabase.drop}). */
  connect(): Promise<pg.Client>;
  /** End every session and drop the database. Idempotent. */
  drop(): Promise<void>;
}

function clientFor(config: BenchConfig, database: string): pg.Client {
  const client = new pg.Client({
    host: config.pg.host,
    port: config.pg.port,
    user: config.pg.user,
    database,
    connectionTimeoutMillis: 10_000,
  });
  client.on('error', () => {});
  return client;
}

/** Drop the `bench_q_<pid>_…` databases of runs whose process is gone. */
export function dropStaleQueueDatabases(config: BenchConfig, log: (message: string) => void): Promise<void> {
  return dropStaleBenchDatabases(config, QUEUE_DATABASE_PREFIX, log);
}

let seedSql: Promise<string> | undefined;

/** The design's SQL (test/fixtures/seed-v2.sql). */
export function readSeedSql(): Promise<string> {
  seedSql ??= readFile(new URL('../../test/fixtures/seed-v2.sql', import.meta.url), 'utf8');
  return seedSql;
}

/** Create a database with Supabase's shape and the given schema. */
export async function createQueueDatabase(
  config: BenchConfig,
  schema: QueueDatabaseSchema,
): Promise<QueueDatabase> {
  const name = `${QUEUE_DATABASE_PREFIX}${process.pid}_${randomBytes(4).toString('hex')}`;
  await withAdmin(config, (client) => client.query(`create database "${name}"`));
  const sessions: pg.Client[] = [];
  let dropped: Promise<void> | undefined;
  const drop = (): Promise<void> => {
    dropped ??= (async () => {
      await Promise.all(sessions.map((session) => session.end().catch(() => {})));
      await withAdmin(config, (client) => client.query(`drop database if exists "${name}" with (force)`));
    })();
    return dropped;
  };
  const unregister = onInterrupt(drop);
  const connect = async (): Promise<pg.Client> => {
    const client = clientFor(config, name);
    await client.connect();
    sessions.push(client);
    return client;
  };
  try {
    const admin = await connect();
    await installSupabaseShape(admin);
    if (schema === 'seed') {
      await admin.query(await readSeedSql());
    } else {
      const migrations =
        typeof schema === 'object'
          ? MIGRATIONS.filter((m) => m.version < schema.before)
          : schema === 'previous'
            ? MIGRATIONS.filter((m) => m.version === FIRST_QUEUE_VERSION)
            : schema === 'lean'
              ? MIGRATIONS.filter((m) => m.version < LEAN_BEFORE_VERSION)
              : schema === 'serial'
                ? MIGRATIONS.filter((m) => m.version < PARALLEL_BATCH_VERSION)
                : MIGRATIONS;
      await applyMigrations(admin, { migrations });
    }
    return {
      name,
      schema,
      admin,
      connect,
      async drop() {
        await drop();
        unregister();
      },
    };
  } catch (error) {
    await drop().catch(() => {});
    unregister();
    throw error;
  }
}

/**
 * Bulk-load `count` waiting tickets with these (exact) criteria into an idle queue, bypassing the join; the pool key
 * is the criteria's canonical JSON text, as the join computes it. They expire after `lifetime`.
 */
export async function insertBacklog(
  client: Pick<pg.Client, 'query'>,
  count: number,
  criteria: Readonly<Record<string, string>>,
  { lifetime = '1 hour' }: { lifetime?: string } = {},
): Promise<void> {
  await client.query(
    `insert into matchmaker.tickets (user_id, pool, criteria, expires_at)
     select gen_random_uuid(), x.c::text, x.c, clock_timestamp() + $3::interval
     from generate_series(1, $1) as g, (select $2::jsonb as c) as x`,
    [count, JSON.stringify(criteria), lifetime],
  );
}
