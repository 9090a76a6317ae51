import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyMigrations, MIGRATIONS } from '../../src/migrations/index';
import { createQueueDb, type QueueDb } from '../queue-sql/queueDb';
import { presence } from './presenceDb';

/**
 * 20261128000700 makes the presence functions call the queue tier's `_topic` and `_notify` instead of their
 * own copies. Two databases run the same script of presence calls: one with the migrations up to 000500 (the
 * presence functions of 000200), one with every migration. Answers, errors, rows and notifications must be
 * the same, up to clock readings and random match ids.
 */

const HELPERS_MIGRATION = '20261128000700';

let before: QueueDb;
let after: QueueDb;
beforeAll(async () => {
  [before, after] = await Promise.all([createQueueDb({ migrate: false }), createQueueDb()]);
  const client = await before.pool.connect();
  try {
    await applyMigrations(client, { migrations: MIGRATIONS.filter((m) => m.version < HELPERS_MIGRATION) });
  } finally {
    client.release();
  }
});
afterAll(async () => {
  await Promise.all([before?.drop(), after?.drop()]);
});

// Fixed ids, so both databases see the same users and searches.
const user = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const search = (n: number) => `10000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

const TIME_KEYS = new Set([
  'server_time',
  'started_at',
  'started_us',
  'expires_at',
  'ended_at',
  'created_at',
  'at',
]);

/** JSON with clock readings replaced by their kind, and random (match) ids by their order of appearance. */
function normalise(value: unknown, ids: Map<string, string>, known: ReadonlySet<string>): unknown {
  if (Array.isArray(value)) return value.map((v) => normalise(v, ids, known));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value)) {
      if (TIME_KEYS.has(key) && v !== null) out[key] = `<${typeof v}>`;
      else out[key] = normalise(v, ids, known);
    }
    return out;
  }
  if (
    typeof value === 'string' &&
    /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(value)
  ) {
    if (known.has(value)) return value;
    if (!ids.has(value)) ids.set(value, `<id ${ids.size + 1}>`);
    return ids.get(value);
  }
  return value;
}

/** Runs one call, recording its answer or its error (SQLSTATE and message). */
async function outcome(call: () => Promise<unknown>): Promise<unknown> {
  try {
    return { ok: await call() };
  } catch (error) {
    const e = error as { code?: string; message?: string };
    return { error: { code: e.code, message: e.message } };
  }
}

/** The script: every presence RPC, every way a search ends (and so every notification), and refusals. */
async function script(pool: pg.Pool): Promise<unknown[]> {
  const out: unknown[] = [];
  const run = async (call: () => Promise<unknown>) => out.push(await outcome(call));
  const [a, b, c, d, e, f, g] = [1, 2, 3, 4, 5, 6, 7].map(user) as [
    string,
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const duo = { mode: 'duo', level: 3, ranked: true };
  await run(() => presence.begin(pool, a, duo, search(1), 1));
  await run(() => presence.begin(pool, b, duo, search(2), 2));
  await run(() => presence.begin(pool, a, duo, search(1)));
  await run(() => presence.begin(pool, c, duo, search(3), 0));
  await run(() => presence.begin(pool, d, { mode: 'solo' }, search(4)));
  await run(() => presence.begin(pool, d, { mode: 'trio' }, search(5))); // supersedes 4
  await run(() => presence.begin(pool, f, duo, search(6), 3));
  await run(() => presence.begin(pool, g, duo, search(7), 4));
  await run(() => presence.claim(pool, a, a, b)); // claimed: two 'matched' notifications
  await run(() => presence.claim(pool, c, c, a)); // lost: partner matched
  await run(() => presence.claim(pool, c, c, d)); // lost: criteria mismatch
  await run(() => presence.claim(pool, c, a, b)); // refused: the caller is not in the claim
  await run(() => presence.claim(pool, c, c, c)); // refused: self
  await run(() => presence.heartbeat(pool, c));
  await run(() => presence.move(pool, c, 8, 0)); // the database picks
  await run(() => presence.move(pool, f, 8, 3, 5));
  await run(() => presence.move(pool, a, 8, 1, 2)); // not searching
  await run(() => presence.end(pool, g)); // cancelled: notification
  await run(() => presence.end(pool, g));
  await run(() => presence.end(pool, a)); // already matched
  // An expired search: closed when touched, with a notification.
  await pool.query(
    `update matchmaker.presence_searches set expires_at = now() - interval '1 second' where id = $1`,
    [search(6)],
  );
  await run(() => presence.claim(pool, c, c, f)); // lost: partner expired
  await run(() => presence.heartbeat(pool, f));
  for (const u of [a, b, c, d, e, f, g]) await run(() => presence.state(pool, u));
  await run(() => presence.state(pool, a, search(1)));
  await run(() => presence.state(pool, b, search(1))); // another user's search
  for (const bad of [[], { '1x': 'a' }, { a: null }, { a: 'x'.repeat(201) }, { a: { b: 1 } }]) {
    await run(() => presence.begin(pool, e, bad));
  }
  await run(() => presence.begin(pool, e, { a: 'x'.repeat(200), n: 1.5, t: false }, search(8)));
  await run(() => pool.query('select matchmaker.presence_cleanup() as r').then((r) => r.rows[0].r));
  const rows = await pool.query(
    `select id, user_id, status, reason, criteria, pool, shard, partner_id, match_criteria,
            ended_at is null as open, match_id is null as no_match
     from matchmaker.presence_searches order by id`,
  );
  out.push(rows.rows);
  const matches = await pool.query(
    `select user_a, user_b, ticket_a, ticket_b, pool, criteria from matchmaker.matches order by ticket_a`,
  );
  out.push(matches.rows);
  const messages = await pool.query(
    `select topic, event, extension, private, payload from realtime.messages order by inserted_at, topic, event, payload::text`,
  );
  out.push(messages.rows);
  return out;
}

/** Definition facts that callers and PostgREST see (not the body). */
async function signature(pool: pg.Pool, fn: string) {
  const r = await pool.query(
    `select p.provolatile, p.proparallel, p.prosecdef, p.proconfig, p.proacl::text, p.prorettype::regtype::text,
            pg_catalog.pg_get_function_identity_arguments(p.oid) as args, pg_catalog.pg_get_userbyid(p.proowner) as owner
     from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
     where n.nspname = 'matchmaker' and p.proname = $1`,
    [fn],
  );
  return r.rows;
}

describe('20261128000700: presence functions on the queue helpers', () => {
  it('is applied in one database and not in the other', async () => {
    const versions = async (db: QueueDb) =>
      (await db.pool.query('select version from matchmaker.schema_migrations order by 1')).rows.map(
        (r) => r.version,
      );
    expect(await versions(after)).toContain(HELPERS_MIGRATION);
    expect(await versions(before)).not.toContain(HELPERS_MIGRATION);
  });

  it('answers, refuses, writes and notifies exactly as the 000200 functions did', async () => {
    const [old, now] = await Promise.all([script(before.pool), script(after.pool)]);
    const known = new Set([
      ...Array.from({ length: 8 }, (_, i) => user(i + 1)),
      ...Array.from({ length: 8 }, (_, i) => search(i + 1)),
    ]);
    const normalisedOld = normalise(old, new Map(), known);
    expect(normalise(now, new Map(), known)).toEqual(normalisedOld);
    // The script did reach every path it names (a vacuous comparison would prove nothing).
    const text = JSON.stringify(normalisedOld);
    for (const needle of [
      '"result":"claimed"',
      '"reason":"partner_matched"',
      '"reason":"criteria_mismatch"',
      '"reason":"partner_not_searching"',
      '"result":"cancelled"',
      '"result":"already_matched"',
      '"result":"moved"',
      '"code":"42501"',
      '"code":"22023"',
      '"code":"MM409"',
      '"event":"matched"',
      '"outcome":"superseded"',
      '"outcome":"expired"',
      '"outcome":"cancelled"',
    ]) {
      expect(text).toContain(needle);
    }
  });

  it("keeps the helpers' names, signatures, volatility, owners and grants", async () => {
    for (const fn of ['_presence_topic', '_presence_notify']) {
      expect(await signature(after.pool, fn)).toEqual(await signature(before.pool, fn));
    }
  });

  it("takes the topic and the notification from the queue tier's _topic and _notify", async () => {
    const client = await after.pool.connect();
    try {
      await client.query('begin');
      // Redefine the queue helpers inside a transaction that is rolled back: presence must follow them.
      await client.query(`create or replace function matchmaker._topic(p_user uuid) returns text
        language sql immutable parallel safe set search_path = '' as $$ select 'queue-topic:' || p_user::text $$`);
      await client.query(`create table public.notified (user_id uuid, event text, payload jsonb)`);
      await client.query(`create or replace function matchmaker._notify(p_user uuid, p_event text, p_payload jsonb)
        returns void language plpgsql volatile set search_path = '' as $$
        begin insert into public.notified values (p_user, p_event, p_payload); end $$`);
      const u = user(9);
      await client.query(`set local role authenticated`);
      await client.query(`select set_config('request.jwt.claims', $1, true)`, [
        JSON.stringify({ sub: u, role: 'authenticated' }),
      ]);
      const first = await client.query(`select public.matchmaker_presence_begin('{"x":"1"}'::jsonb) as r`);
      expect(first.rows[0].r.topic).toBe(`queue-topic:${u}`);
      await client.query(`select public.matchmaker_presence_begin('{"x":"2"}'::jsonb)`); // supersedes: notifies
      await client.query('reset role');
      const notified = await client.query('select user_id, event, payload from public.notified');
      expect(notified.rows).toMatchObject([
        { user_id: u, event: 'cancelled', payload: { tier: 'presence', outcome: 'superseded' } },
      ]);
      const sent = await client.query(
        `select count(*)::int as n from realtime.messages where topic like '%' || $1`,
        [u],
      );
      expect(sent.rows[0].n).toBe(0);
    } finally {
      await client.query('rollback');
      client.release();
    }
  });
});
