/**
 * Fixtures for the presence tiers' SQL tests: a throw-away database (`sm_p_<random>`) with Supabase's shape and
 * the shipped migrations, and helpers that call the RPCs the way PostgREST does (one transaction: `SET LOCAL
 * ROLE`, `request.jwt.claims`, the call).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { applyMigrations } from '../../src/migrations/applyMigrations';
import { installSupabaseShape } from '../../src/testing/supabaseShape';

const SERVER_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** A migrated database and a pool on it (admin). */
export interface PresenceDb {
  readonly pool: pg.Pool;
  /** A dedicated session (closed by `drop`). */
  session(): Promise<pg.Client>;
  drop(): Promise<void>;
}

async function admin(run: (client: pg.Client) => Promise<unknown>): Promise<void> {
  const client = new pg.Client({ connectionString: SERVER_URL });
  client.on('error', () => {});
  await client.connect();
  try {
    await run(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Creates the database, installs Supabase's shape and applies every shipped migration. */
export async function createPresenceDb(): Promise<PresenceDb> {
  const name = `sm_p_${randomBytes(6).toString('hex')}`;
  await admin((c) => c.query(`create database ${name}`));
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  const pool = new pg.Pool({ connectionString: url.toString(), max: 8 });
  pool.on('error', () => {});
  const sessions: pg.Client[] = [];
  let dropped: Promise<void> | undefined;
  const db: PresenceDb = {
    pool,
    async session() {
      const client = new pg.Client({ connectionString: url.toString() });
      client.on('error', () => {});
      await client.connect();
      sessions.push(client);
      return client;
    },
    drop() {
      dropped ??= (async () => {
        await Promise.all(sessions.map((s) => s.end().catch(() => {})));
        await pool.end().catch(() => {});
        await admin((c) => c.query(`drop database if exists ${name} with (force)`));
      })();
      return dropped;
    },
  };
  try {
    await installSupabaseShape(pool);
    const client = await pool.connect();
    try {
      await applyMigrations(client);
    } finally {
      client.release();
    }
  } catch (error) {
    await db.drop();
    throw error;
  }
  return db;
}

/** What every presence RPC returns. */
export interface PresenceRpcState {
  status: string;
  result: string;
  reason: string | null;
  user_id: string;
  topic: string;
  ttl_ms: number;
  heartbeat_interval_ms: number;
  shard?: number | null;
  search: {
    id: string;
    criteria: Record<string, unknown>;
    pool: string;
    started_at: string;
    started_us: number;
    expires_at: string;
    shard: number | null;
    ended_at: string | null;
  } | null;
  match: { id: string; partner_id: string; created_at: string; criteria: Record<string, unknown> } | null;
}

/** Runs `text` in one transaction as `role` with these claims (null: no claims at all). */
export async function asRole<T>(
  session: pg.ClientBase | pg.Pool,
  role: string,
  claims: Record<string, unknown> | null,
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  const client = session instanceof pg.Pool ? await session.connect() : session;
  try {
    await client.query('begin');
    try {
      await client.query(`set local role ${role}`);
      await client.query(`select set_config('request.jwt.claims', $1, true)`, [
        claims === null ? '' : JSON.stringify(claims),
      ]);
      const result = await client.query(text, params);
      await client.query('commit');
      return result.rows as T[];
    } catch (error) {
      await client.query('rollback').catch(() => {});
      throw error;
    }
  } finally {
    if (session instanceof pg.Pool) (client as pg.PoolClient).release();
  }
}

/** Claims of a signed-in user. */
export const userClaims = (uid: string) => ({ sub: uid, role: 'authenticated', aud: 'authenticated' });

/** Calls `public.<fn>(name => value, ...)` as user `uid`. */
export async function rpc(
  session: pg.ClientBase | pg.Pool,
  uid: string,
  fn: string,
  args: Record<string, { value: unknown; type: string }> = {},
): Promise<PresenceRpcState> {
  const names = Object.keys(args);
  const sql = `select public.${fn}(${names.map((n, i) => `${n} => $${i + 1}::${args[n]!.type}`).join(', ')}) as r`;
  const params = names.map((n) => {
    const v = args[n]!.value;
    return typeof v === 'object' && v !== null ? JSON.stringify(v) : v;
  });
  const rows = await asRole<{ r: PresenceRpcState }>(session, 'authenticated', userClaims(uid), sql, params);
  return rows[0]!.r;
}

/** Helpers for the six user RPCs. */
export const presence = {
  begin: (
    s: pg.ClientBase | pg.Pool,
    uid: string,
    criteria: object = {},
    searchId?: string,
    shard?: number,
  ) =>
    rpc(s, uid, 'matchmaker_presence_begin', {
      criteria: { value: criteria, type: 'jsonb' },
      ...(searchId === undefined ? {} : { search_id: { value: searchId, type: 'uuid' } }),
      ...(shard === undefined ? {} : { shard: { value: shard, type: 'integer' } }),
    }),
  end: (s: pg.ClientBase | pg.Pool, uid: string, searchId?: string) =>
    rpc(
      s,
      uid,
      'matchmaker_presence_end',
      searchId === undefined ? {} : { search_id: { value: searchId, type: 'uuid' } },
    ),
  heartbeat: (s: pg.ClientBase | pg.Pool, uid: string) => rpc(s, uid, 'matchmaker_presence_heartbeat'),
  state: (s: pg.ClientBase | pg.Pool, uid: string, searchId?: string) =>
    rpc(
      s,
      uid,
      'matchmaker_presence_state',
      searchId === undefined ? {} : { search_id: { value: searchId, type: 'uuid' } },
    ),
  claim: (s: pg.ClientBase | pg.Pool, uid: string, a: string, b: string) =>
    rpc(s, uid, 'matchmaker_presence_claim', {
      user_a: { value: a, type: 'uuid' },
      user_b: { value: b, type: 'uuid' },
    }),
  move: (s: pg.ClientBase | pg.Pool, uid: string, shardCount: number, current: number, target?: number) =>
    rpc(s, uid, 'matchmaker_presence_move', {
      shard_count: { value: shardCount, type: 'integer' },
      current_shard: { value: current, type: 'integer' },
      ...(target === undefined ? {} : { target_shard: { value: target, type: 'integer' } }),
    }),
};

/** A fresh user id. */
export const newUser = (): string => randomUUID();

/** Broadcasts realtime.send wrote to a user's private topic, oldest first. */
export async function notificationsOf(pool: pg.Pool, uid: string) {
  const r = await pool.query(
    `select event, payload from realtime.messages where topic = $1 order by inserted_at, id`,
    [`matchmaker:user:${uid}`],
  );
  return r.rows as { event: string; payload: Record<string, unknown> }[];
}
