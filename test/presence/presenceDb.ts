/**
 * Fixtures for the presence tiers' SQL tests: a throw-away database (the queue SQL tests' `createQueueDb`:
 * Supabase's shape and the shipped migrations), and helpers that call the RPCs the way PostgREST does (one transaction: `SET LOCAL
 * ROLE`, `request.jwt.claims`, the call).
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { asRole as asRoleOnSession, createQueueDb } from '../queue-sql/queueDb';

/** A migrated database and a pool on it (admin). */
export interface PresenceDb {
  readonly pool: pg.Pool;
  /** A dedicated session (closed by `drop`). */
  session(): Promise<pg.Client>;
  drop(): Promise<void>;
}

/** Creates the database (the queue SQL tests' fixture: Supabase's shape and every shipped migration). */
export async function createPresenceDb(): Promise<PresenceDb> {
  const db = await createQueueDb({ poolSize: 8 });
  return { pool: db.pool, session: () => db.client(), drop: () => db.drop() };
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

/** Runs `text` in one transaction as `role` with these claims (null: no claims at all), on a session or a pool. */
export async function asRole<T>(
  session: pg.ClientBase | pg.Pool,
  role: string,
  claims: Record<string, unknown> | null,
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  if (!(session instanceof pg.Pool))
    return (await asRoleOnSession(session, role, claims, text, params)) as T[];
  const client = await session.connect();
  try {
    return (await asRoleOnSession(client, role, claims, text, params)) as T[];
  } finally {
    client.release();
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
