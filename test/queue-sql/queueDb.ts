/**
 * Fixtures for the queue tier's SQL tests: a fresh database per test file (`sm_q_<random>`) with Supabase's
 * shape and (optionally) the migrations, and helpers that call the RPCs the way PostgREST does (one
 * transaction: `SET LOCAL ROLE`, `request.jwt.claims`, the call).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { applyMigrations } from '../../src/migrations/applyMigrations';
import { MIGRATIONS } from '../../src/migrations/migrations.generated';
import { withAdmin, withDatabase } from '../../src/testing/database';
import { installSupabaseShape } from '../../src/testing/supabaseShape';

export const SERVER_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface QueueDb {
  readonly name: string;
  readonly url: string;
  /** Admin (superuser) pool on the database. */
  readonly pool: pg.Pool;
  /** A new dedicated client (closed by `drop`). */
  client(): Promise<pg.Client>;
  drop(): Promise<void>;
}

export { withDatabase };

/**
 * Creates `sm_q_<random>` with Supabase's shape; applies the shipped migrations (or those before `before`) unless
 * `migrate: false`.
 */
export async function createQueueDb(
  options: {
    migrate?: boolean;
    /** Apply only the migrations whose version is lower than this one (the state before it). */
    before?: string;
    serverUrl?: string;
    poolSize?: number;
    setupSql?: string;
  } = {},
): Promise<QueueDb> {
  const serverUrl = options.serverUrl ?? SERVER_URL;
  const name = `sm_q_${randomBytes(6).toString('hex')}`;
  await withAdmin(serverUrl, (c) => c.query(`create database ${name}`));
  const url = withDatabase(serverUrl, name);
  const pool = new pg.Pool({ connectionString: url, max: options.poolSize ?? 4 });
  pool.on('error', () => {});
  const clients: pg.Client[] = [];
  let dropped: Promise<void> | undefined;
  const db: QueueDb = {
    name,
    url,
    pool,
    async client() {
      const client = new pg.Client({ connectionString: url });
      client.on('error', () => {});
      await client.connect();
      clients.push(client);
      return client;
    },
    drop() {
      dropped ??= (async () => {
        await Promise.all(clients.map((c) => c.end().catch(() => {})));
        await pool.end().catch(() => {});
        await withAdmin(serverUrl, (c) => c.query(`drop database if exists ${name} with (force)`));
      })();
      return dropped;
    },
  };
  try {
    await installSupabaseShape(pool);
    if (options.setupSql) await pool.query(options.setupSql);
    if (options.migrate !== false) {
      const client = await pool.connect();
      try {
        const before = options.before;
        await applyMigrations(
          client,
          before === undefined ? {} : { migrations: MIGRATIONS.filter((m) => m.version < before) },
        );
      } finally {
        client.release();
      }
    }
  } catch (error) {
    await db.drop();
    throw error;
  }
  return db;
}

/** Anything that runs queries on one session. */
export interface Session {
  query(text: string, params?: unknown[]): Promise<pg.QueryResult>;
}

/** Runs `text` in one transaction as `role` with these JWT claims (what PostgREST does per request). */
export async function asRole<T extends pg.QueryResultRow = pg.QueryResultRow>(
  session: Session,
  role: 'anon' | 'authenticated' | 'service_role' | string,
  claims: Record<string, unknown> | null,
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  const claimsJson = claims === null ? '' : JSON.stringify(claims).replaceAll("'", "''");
  await session.query(
    `begin; set local role ${role}; select set_config('request.jwt.claims', '${claimsJson}', true)`,
  );
  try {
    const result = await session.query(text, params);
    await session.query('commit');
    return result.rows as T[];
  } catch (error) {
    await session.query('rollback').catch(() => {});
    throw error;
  }
}

/** The JSON every user RPC returns. */
export interface RpcState {
  status: string;
  result: string;
  reason: string | null;
  topic: string;
  heartbeat_interval_ms: number | null;
  server_time: string;
  ticket: {
    id: string;
    criteria: Record<string, string>;
    pool: string;
    enqueued_at: string;
    expires_at?: string;
    last_seen_at?: string;
    widens_at?: string | null;
    ended_at?: string;
  } | null;
  match: { id: string; partner_id: string; created_at: string; criteria: Record<string, string> } | null;
}

const userClaims = (uid: string) => ({ sub: uid, role: 'authenticated', aud: 'authenticated' });

/** Calls a user RPC as `uid` (authenticated), PostgREST style. */
export async function rpcAs(
  session: Session,
  uid: string,
  fn: 'matchmaker_join' | 'matchmaker_cancel' | 'matchmaker_heartbeat' | 'matchmaker_state',
  args: { criteria?: Record<string, unknown>; ticket_id?: string } = {},
): Promise<RpcState> {
  const names: string[] = [];
  const params: unknown[] = [];
  if (args.criteria !== undefined) {
    params.push(JSON.stringify(args.criteria));
    names.push(`criteria => $${params.length}::jsonb`);
  }
  if (args.ticket_id !== undefined) {
    params.push(args.ticket_id);
    names.push(`ticket_id => $${params.length}::uuid`);
  }
  const rows = await asRole<{ r: RpcState }>(
    session,
    'authenticated',
    userClaims(uid),
    `select public.${fn}(${names.join(', ')}) as r`,
    params,
  );
  return rows[0]!.r;
}

export const join = (s: Session, uid: string, criteria?: Record<string, unknown>, ticketId?: string) =>
  rpcAs(s, uid, 'matchmaker_join', {
    ...(criteria === undefined ? {} : { criteria }),
    ...(ticketId === undefined ? {} : { ticket_id: ticketId }),
  });
export const cancel = (s: Session, uid: string, ticketId?: string) =>
  rpcAs(s, uid, 'matchmaker_cancel', ticketId === undefined ? {} : { ticket_id: ticketId });
export const heartbeat = (s: Session, uid: string, ticketId?: string) =>
  rpcAs(s, uid, 'matchmaker_heartbeat', ticketId === undefined ? {} : { ticket_id: ticketId });
export const state = (s: Session, uid: string, ticketId?: string) =>
  rpcAs(s, uid, 'matchmaker_state', ticketId === undefined ? {} : { ticket_id: ticketId });

/** What matchmaker_process returns. */
export interface ProcessResult {
  pairs: number;
  expired: number;
  disconnected: number;
  pruned: number;
  pools: number;
  more: boolean;
  resume_after: string | null;
  /** Pools a due prune pass removed from the registry in this call (since 20261129000200). */
  pools_pruned?: number;
}

/** One call of the processor as the service role. */
export async function processOnce(session: Session, maxPairs = 1000, resumeAfter: string | null = null) {
  const rows = await asRole<{ r: ProcessResult }>(
    session,
    'service_role',
    { role: 'service_role' },
    'select public.matchmaker_process($1::integer, $2::text) as r',
    [maxPairs, resumeAfter],
  );
  return rows[0]!.r;
}

/** Calls the processor until it reports nothing more to do; returns every call's result. */
export async function drain(session: Session, maxPairs = 1000): Promise<ProcessResult[]> {
  const results: ProcessResult[] = [];
  let resume: string | null = null;
  for (let i = 0; i < 10_000; i += 1) {
    const r = await processOnce(session, maxPairs, resume);
    results.push(r);
    if (!r.more) return results;
    resume = r.resume_after;
  }
  throw new Error('processor never finished');
}

export const newUser = (): string => randomUUID();

/** Sets settings columns (admin). */
export async function configure(session: Session, settings: Record<string, unknown>): Promise<void> {
  const keys = Object.keys(settings);
  const sets = keys.map((k, i) => `${k} = $${i + 1}`).join(', ');
  await session.query(
    `update matchmaker.settings set ${sets}`,
    keys.map((k) => {
      const v = settings[k];
      return typeof v === 'object' && v !== null ? JSON.stringify(v) : v;
    }),
  );
}

/** Messages sent by realtime.send to a user's private topic, oldest first. */
export async function notificationsOf(session: Session, uid: string) {
  const r = await session.query(
    `select event, payload from realtime.messages where topic = $1 order by inserted_at, payload->>'type'`,
    [`matchmaker:user:${uid}`],
  );
  return r.rows as { event: string; payload: Record<string, unknown> }[];
}

/** Rows examined (sequential-scan rows + index entries read) on these tables in the current transaction. */
export async function examinedSoFar(session: Session, tables: readonly string[]): Promise<number> {
  const r = await session.query(
    `select coalesce(sum(pg_stat_get_xact_tuples_returned(c.oid)), 0)::bigint as n from pg_class as c
     where c.oid = any ($1::regclass[])
        or c.oid in (select i.indexrelid from pg_index as i where i.indrelid = any ($1::regclass[]))`,
    [tables],
  );
  return Number(r.rows[0].n);
}

/** Runs `sql` in its own transaction (as `role` with `claims`, or as the session user) and counts the rows it examined. */
export async function measureExamined(
  session: Session,
  tables: readonly string[],
  sql: string,
  params: unknown[] = [],
  as?: { role: string; claims: Record<string, unknown> },
): Promise<{ examined: number; rows: pg.QueryResultRow[] }> {
  await session.query('begin');
  try {
    if (as) {
      await session.query(`set local role ${as.role}`);
      await session.query(`select set_config('request.jwt.claims', $1, true)`, [JSON.stringify(as.claims)]);
    }
    const before = await examinedSoFar(session, tables);
    const result = await session.query(sql, params);
    if (as) await session.query('reset role');
    const after = await examinedSoFar(session, tables);
    await session.query('commit');
    return { examined: after - before, rows: result.rows };
  } catch (error) {
    await session.query('rollback').catch(() => {});
    throw error;
  }
}

/**
 * The two databases a migration's tests compare, created before the file's tests and dropped after them: `before`,
 * migrated up to (not including) `version`, and `current`, with every shipped migration, or with those below
 * `currentBefore` when a test isolates one migration from later ones that change what it compares. Read them
 * inside tests.
 */
export function databasesAround(
  version: string,
  { currentBefore }: { readonly currentBefore?: string } = {},
): { readonly before: QueueDb; readonly current: QueueDb } {
  let created: readonly [QueueDb, QueueDb] | undefined;
  beforeAll(async () => {
    const settled = await Promise.allSettled([
      createQueueDb({ before: version }),
      createQueueDb(currentBefore === undefined ? {} : { before: currentBefore }),
    ]);
    const [before, current] = settled;
    if (before.status === 'rejected' || current.status === 'rejected') {
      await Promise.all(settled.map((r) => (r.status === 'fulfilled' ? r.value.drop() : undefined)));
      throw before.status === 'rejected' ? before.reason : (current as PromiseRejectedResult).reason;
    }
    created = [before.value, current.value];
  });
  afterAll(async () => {
    await Promise.all((created ?? []).map((db) => db.drop()));
  });
  const pick = (index: 0 | 1): QueueDb => {
    if (created === undefined) throw new Error('databasesAround: the databases exist only inside tests');
    return created[index];
  };
  return {
    get before() {
      return pick(0);
    },
    get current() {
      return pick(1);
    },
  };
}

/** One value for every user, or a function of the user's index (0 = the first, oldest ticket). */
export type PerUser<T> = T | ((index: number) => T);

const perUser = <T>(value: PerUser<T>, count: number): T[] =>
  Array.from({ length: count }, (_, i) =>
    typeof value === 'function' ? (value as (index: number) => T)(i) : value,
  );

/**
 * Waiting tickets written directly, in this order (oldest first), bypassing the join, which would pair them at once:
 * a backlog, as a burst of joins leaves it while maintenance is behind. One statement. The pool is the criteria's
 * canonical text (as an exact-key join computes it) unless given; `expired` and `stale` date the tickets' expiry and
 * last heartbeat in the past. Criteria, `expired` and `stale` may differ per user.
 *
 * @example
 * await insertWaiting(s, users, { room: 'b' }, { expired: (i) => i === 5, stale: (i) => i === 9 });
 */
export async function insertWaiting(
  session: Session,
  users: readonly string[],
  criteria: PerUser<Readonly<Record<string, unknown>>>,
  {
    pool,
    expired = false,
    stale = false,
  }: { pool?: string; expired?: PerUser<boolean>; stale?: PerUser<boolean> } = {},
): Promise<void> {
  await session.query(
    `insert into matchmaker.tickets (user_id, pool, criteria, expires_at, last_seen_at)
     select x.u, coalesce($3::text, x.c::text), x.c,
            case when x.e then now() - interval '1 second' else clock_timestamp() + interval '1 hour' end,
            case when x.st then now() - interval '1 day' else clock_timestamp() end
     from unnest($1::uuid[], $2::jsonb[], $4::boolean[], $5::boolean[]) with ordinality as x(u, c, e, st, n)
     order by x.n`,
    [
      users,
      perUser(criteria, users.length).map((c) => JSON.stringify(c)),
      pool ?? null,
      perUser(expired, users.length),
      perUser(stale, users.length),
    ],
  );
}

/**
 * Registers `count` pools with no ticket, `{"room": "<prefix><n>"}` with n zero-padded (so they sort in order),
 * registered `registeredAgo` back (an interval; default now).
 */
export async function registerEmptyPools(
  session: Session,
  count: number,
  prefix: string,
  registeredAgo = '0 seconds',
): Promise<void> {
  await session.query(
    `insert into matchmaker.pools (pool, created_at)
     select pg_catalog.jsonb_build_object('room', $2::text || pg_catalog.lpad(g::text, 6, '0'))::text,
            pg_catalog.clock_timestamp() - $3::interval
     from pg_catalog.generate_series(1, $1) as g
     on conflict do nothing`,
    [count, prefix, registeredAgo],
  );
}

/** Backend pid of a session. */
export async function backendPid(session: Session): Promise<number> {
  return (await session.query('select pg_backend_pid() as pid')).rows[0].pid as number;
}

/** Resolves once backend `pid` waits for a lock (observed through `observer`). */
export async function waitUntilBlocked(
  observer: Session,
  pid: number,
  events?: readonly string[],
  timeoutMs = 10_000,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await observer.query(
      `select wait_event from pg_stat_activity where pid = $1 and wait_event_type = 'Lock'
         and ($2::text[] is null or wait_event = any ($2::text[]))`,
      [pid, events ?? null],
    );
    if (r.rows.length > 0) return r.rows[0].wait_event as string;
    if (Date.now() > deadline) throw new Error(`backend ${pid} never blocked on a lock`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Starts an explicit transaction as a user and runs one RPC in it, leaving the transaction open. */
export async function openRpc(session: Session, uid: string, call: string, params: unknown[] = []) {
  await session.query(
    `begin; set local role authenticated; select set_config('request.jwt.claims', '${JSON.stringify({ sub: uid, role: 'authenticated' })}', true)`,
  );
  const r = await session.query(call, params);
  return r.rows[0] as Record<string, unknown>;
}

/** `n` fixed user ids (`00000000-0000-4000-8000-<index>`), so two databases can be given the same script. */
export function fixedUsers(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);
}

/** Names ids of `users` as `u<index>` (`-` for none, `other` for an id not in the list), to compare databases. */
export function userNamer(users: readonly string[]): (id: unknown) => string {
  return (id) => {
    const index = users.indexOf(String(id));
    return index >= 0 ? `u${index}` : id === null || id === undefined ? '-' : 'other';
  };
}

/** A stand-in for pg_cron in a test database: records schedule/unschedule calls. NOT pg_cron. */
export const CRON_STAND_IN = `
  create schema cron;
  create table cron.job (jobid bigserial primary key, jobname text unique, schedule text not null, command text not null);
  create function cron.schedule(job_name text, schedule text, command text) returns bigint language sql as $$
    insert into cron.job (jobname, schedule, command) values (job_name, schedule, command)
    on conflict (jobname) do update set schedule = excluded.schedule, command = excluded.command
    returning jobid $$;
  create function cron.unschedule(job_id bigint) returns boolean language sql as $$
    with d as (delete from cron.job where jobid = job_id returning 1) select exists (select 1 from d) $$;
`;
