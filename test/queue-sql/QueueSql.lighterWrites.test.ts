/**
 * Migration 20261128000600 (lighter writes):
 * - the heartbeat's inline "alive" path answers exactly like the 20261128000100 heartbeat (now
 *   `_heartbeat_general`) over every branch, and is the only branch that does not call it;
 * - the pool registry is written once per pool: a join into a known pool inserts nothing into matchmaker.pools,
 *   while any insert into tickets (bulk loads too) still registers new pools for the processor;
 * - the history prune (unchanged: the btree on ended_at stays) deletes exactly the rows past the retention, in
 *   batches;
 * - upgrade from a database in the 20261128000500 shape with data: same answers for every user afterwards, old
 *   waiting tickets still pair, old history is pruned; a rerun is a no-op; internal functions stay internal.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyMigrations } from '../../src/migrations/applyMigrations';
import { MIGRATIONS } from '../../src/migrations/migrations.generated';
import {
  asRole,
  configure,
  createQueueDb,
  insertWaiting,
  join,
  newUser,
  processOnce,
  type QueueDb,
  type RpcState,
  type Session,
  state,
} from './queueDb';

const LIGHTER_VERSION = '20261128000600';

let current: QueueDb;

beforeAll(async () => {
  current = await createQueueDb();
});
afterAll(async () => {
  await current?.drop();
});

async function reset(s: Session): Promise<void> {
  await s.query(`truncate matchmaker.tickets, matchmaker.ticket_history, matchmaker.matches, matchmaker.pool_heads,
    matchmaker.pools, realtime.messages`);
  await configure(s, { criteria_keys: [], heartbeat_timeout: '30 seconds', history_retention: '30 days' });
}

/** Runs `text` in a transaction that is rolled back; returns the JSON, or the error's code and message. */
async function tryRolledBack(s: Session, text: string, params: unknown[]): Promise<unknown> {
  await s.query('begin');
  try {
    return (await s.query(text, params)).rows[0]?.r;
  } catch (error) {
    const e = error as { code?: string; message?: string };
    return `${e.code}: ${e.message}`;
  } finally {
    await s.query('rollback');
  }
}

/** The answer with its clock readings (server_time, last_seen_at, a retire's ended_at) reduced to "present". */
function comparable(answer: unknown): unknown {
  if (typeof answer !== 'object' || answer === null) return answer;
  const { server_time, ...rest } = answer as RpcState;
  const clock = (value: unknown) => (value === undefined ? undefined : value === null ? null : 'present');
  const ticket =
    rest.ticket === null
      ? null
      : {
          ...rest.ticket,
          last_seen_at: clock(rest.ticket.last_seen_at),
          ended_at: clock(rest.ticket.ended_at),
        };
  return { ...rest, ticket, server_time: clock(server_time) };
}

describe('heartbeat', () => {
  it('answers like the general heartbeat in every branch; only the alive branch skips it', async () => {
    const s = await current.client();
    await reset(s);
    await configure(s, {
      criteria_keys: [{ key: 'lang' }, { key: 'tz', match: 'flexible', widen_after: '10 seconds' }],
    });
    const [alive, expired, stale, widening, matchedA, matchedB, idle] = Array.from({ length: 7 }, newUser);
    const aliveTicket = (await join(s, alive!, { lang: 'en', tz: 'eu' })).ticket!.id;
    await join(s, expired!, { lang: 'fr' });
    await join(s, stale!, { lang: 'de' });
    await join(s, widening!, { lang: 'it', tz: 'eu' });
    await join(s, matchedA!, { lang: 'jp' });
    const matched = await join(s, matchedB!, { lang: 'jp' });
    expect(matched.status).toBe('matched');
    await s.query(
      `update matchmaker.tickets set expires_at = clock_timestamp() - interval '1 second' where user_id = $1`,
      [expired],
    );
    await s.query(
      `update matchmaker.tickets set last_seen_at = clock_timestamp() - interval '1 minute' where user_id = $1`,
      [stale],
    );
    await s.query(
      `update matchmaker.tickets set widens_at = clock_timestamp() - interval '1 second' where user_id = $1`,
      [widening],
    );
    const ticketOf = async (uid: string) =>
      (await s.query('select id from matchmaker.tickets where user_id = $1', [uid])).rows[0]?.id as string;
    const cases: { name: string; user: string | null; ticket: string | null; fast: boolean }[] = [
      { name: 'alive, by user', user: alive!, ticket: null, fast: true },
      { name: 'alive, by ticket id', user: alive!, ticket: aliveTicket, fast: true },
      { name: "another user's ticket", user: idle!, ticket: aliveTicket, fast: false },
      { name: 'expired', user: expired!, ticket: null, fast: false },
      { name: 'expired, by ticket id', user: expired!, ticket: await ticketOf(expired!), fast: false },
      { name: 'stale heartbeat', user: stale!, ticket: null, fast: false },
      { name: 'due to widen', user: widening!, ticket: null, fast: false },
      { name: 'matched (finished)', user: matchedB!, ticket: null, fast: false },
      { name: 'matched, by ticket id', user: matchedB!, ticket: matched.ticket!.id, fast: false },
      { name: 'no ticket', user: idle!, ticket: null, fast: false },
      { name: 'unknown ticket id', user: idle!, ticket: newUser(), fast: false },
      { name: 'no user', user: null, ticket: null, fast: false },
    ];
    await s.query(`set track_functions = 'all'`);
    for (const c of cases) {
      const before = (
        await s.query('select last_seen_at from matchmaker.tickets where user_id = $1', [c.user])
      ).rows[0]?.last_seen_at as Date | undefined;
      const fast = await tryRolledBack(s, 'select matchmaker._heartbeat($1, $2) as r', [c.user, c.ticket]);
      const general = await tryRolledBack(s, 'select matchmaker._heartbeat_general($1, $2) as r', [
        c.user,
        c.ticket,
      ]);
      expect(comparable(fast), c.name).toEqual(comparable(general));
      if (c.fast) {
        const answer = fast as RpcState;
        expect(answer.result, c.name).toBe('alive');
        expect(new Date(answer.ticket!.last_seen_at!).getTime(), c.name).toBeGreaterThan(before!.getTime());
      }
      // An error (no user, another user's ticket) is the general function's own: it counts no call on error.
      if (typeof fast === 'string') continue;
      // Which path ran: calls of the general function around one (rolled back) call. A delta, because the
      // "xact" counters also hold this backend's counts that are not yet reported.
      const generalCalls = async () =>
        (
          await s.query(
            `select coalesce(pg_stat_get_xact_function_calls('matchmaker._heartbeat_general(uuid, uuid)'::regprocedure), 0)::int as n`,
          )
        ).rows[0]?.n as number;
      await s.query('begin');
      const callsBefore = await generalCalls();
      await s.query('savepoint x');
      await s
        .query('select matchmaker._heartbeat($1, $2)', [c.user, c.ticket])
        .catch(() => s.query('rollback to savepoint x'));
      const calls = (await generalCalls()) - callsBefore;
      await s.query('rollback');
      expect(calls, c.name).toBe(c.fast ? 0 : 1);
    }
  });

  it('public.matchmaker_heartbeat keeps the ticket alive for its owner only (PostgREST-style call)', async () => {
    const s = await current.client();
    await reset(s);
    const [owner, other] = [newUser(), newUser()];
    const ticket = (await join(s, owner)).ticket!.id;
    const claims = (uid: string) => ({ sub: uid, role: 'authenticated' });
    const [mine] = await asRole<{ r: RpcState }>(
      s,
      'authenticated',
      claims(owner),
      'select public.matchmaker_heartbeat() as r',
    );
    expect(mine?.r).toMatchObject({ status: 'waiting', result: 'alive', ticket: { id: ticket } });
    await expect(
      asRole(s, 'authenticated', claims(other), 'select public.matchmaker_heartbeat($1::uuid) as r', [
        ticket,
      ]),
    ).rejects.toMatchObject({ code: 'MM409' });
    await expect(asRole(s, 'anon', null, 'select public.matchmaker_heartbeat() as r')).rejects.toMatchObject({
      code: '42501',
    });
  });
});

describe('pool registry', () => {
  const registry = async (s: Session) =>
    (await s.query('select pool, xmin::text as xmin from matchmaker.pools order by pool')).rows as {
      pool: string;
      xmin: string;
    }[];

  it('a join registers a new pool once; later joins into it leave that row as it is', async () => {
    const s = await current.client();
    await reset(s);
    await configure(s, { criteria_keys: [{ key: 'room' }] });
    await join(s, newUser(), { room: 'a' });
    const first = await registry(s);
    expect(first.map((r) => r.pool)).toEqual(['{"room": "a"}']);
    await join(s, newUser(), { room: 'a' }); // pairs
    await join(s, newUser(), { room: 'a' }); // waits in the known pool
    await join(s, newUser(), { room: 'b' }); // a new pool
    expect((await s.query('select count(*)::int as n from matchmaker.tickets')).rows[0]?.n).toBe(2);
    const after = await registry(s);
    expect(after.map((r) => r.pool)).toEqual(['{"room": "a"}', '{"room": "b"}']);
    expect(after[0]).toEqual(first[0]);
  });

  it('two transactions opening the same new pool at once both succeed and register it once', async () => {
    const s = await current.client();
    await reset(s);
    const [one, two] = [await current.client(), await current.client()];
    const insert = (c: Session) => insertWaiting(c, [newUser()], { room: 'n' });
    await one.query('begin');
    await insert(one);
    await two.query('begin');
    const second = insert(two); // waits for the first transaction's registry row
    await one.query('commit');
    await second;
    await two.query('commit');
    expect((await registry(s)).map((r) => r.pool)).toEqual(['{"room": "n"}']);
  });

  it('any insert into tickets (a bulk load) registers its new pools, and the processor pairs them', async () => {
    const s = await current.client();
    await reset(s);
    await configure(s, { criteria_keys: [{ key: 'room' }] });
    await join(s, newUser(), { room: 'known' });
    await s.query(
      `insert into matchmaker.tickets (user_id, pool, criteria, expires_at)
       select gen_random_uuid(), c::text, c, clock_timestamp() + interval '1 hour'
       from (select jsonb_build_object('room', r) as c from unnest(array['known', 'b', 'c', 'b', 'c', 'd', 'd']) as r) as x`,
    );
    expect((await registry(s)).map((r) => r.pool)).toEqual([
      '{"room": "b"}',
      '{"room": "c"}',
      '{"room": "d"}',
      '{"room": "known"}',
    ]);
    const result = await processOnce(s);
    expect(result.pairs).toBe(4);
    expect((await s.query('select count(*)::int as n from matchmaker.tickets')).rows[0]?.n).toBe(0);
  });
});

describe('history prune', () => {
  const insertHistory = (s: Session, count: number, age: string) =>
    s.query(
      `insert into matchmaker.ticket_history (ticket_id, user_id, outcome, reason, pool, criteria, enqueued_at, ended_at)
       select gen_random_uuid(), gen_random_uuid(), 'cancelled', 'user', '{}', '{}',
              clock_timestamp() - $2::interval, clock_timestamp() - $2::interval + g * interval '1 millisecond'
       from generate_series(1, $1) as g`,
      [count, age],
    );

  it('deletes exactly the rows past the retention, at most sweep_batch per step', async () => {
    const s = await current.client();
    await reset(s);
    await configure(s, { sweep_batch: 3 });
    await insertHistory(s, 5, '40 days');
    // Enough recent rows that the planner's choice is the one a real history gets (on a handful of rows any
    // index is as good); analyzed, as autovacuum does.
    await insertHistory(s, 20_000, '1 day');
    await s.query('analyze matchmaker.ticket_history');
    expect(
      (await s.query(`select to_regclass('matchmaker.ticket_history_ended_at_idx') is not null as kept`))
        .rows[0]?.kept,
    ).toBe(true);
    const first = await processOnce(s);
    expect(first).toMatchObject({ pruned: 3, more: true });
    const second = await processOnce(s);
    expect(second.pruned).toBe(2);
    const third = await processOnce(s);
    expect(third.pruned).toBe(0);
    const left = await s.query(
      `select count(*)::int as n, bool_and(ended_at > clock_timestamp() - interval '2 days') as recent
       from matchmaker.ticket_history`,
    );
    expect(left.rows[0]).toEqual({ n: 20_000, recent: true });
  });

  it('prunes nothing when retention is off', async () => {
    const s = await current.client();
    await reset(s);
    await configure(s, { history_retention: null });
    await insertHistory(s, 3, '400 days');
    expect((await processOnce(s)).pruned).toBe(0);
    expect((await s.query('select count(*)::int as n from matchmaker.ticket_history')).rows[0]?.n).toBe(3);
  });
});

describe('migration', () => {
  it('upgrades a 20261128000500 database with data: same answers, old tickets pair, old history pruned', async () => {
    const db = await createQueueDb({ migrate: false });
    try {
      const s = await db.client();
      const before = await applyMigrations(s, {
        migrations: MIGRATIONS.filter((m) => m.version < LIGHTER_VERSION),
      });
      expect(before.version).toBe('20261128000500');
      await configure(s, { criteria_keys: [{ key: 'room' }] });
      const [waiting, pairA, pairB, cancelled, old, other, late] = Array.from({ length: 7 }, newUser);
      await join(s, waiting!, { room: 'x' });
      await join(s, pairA!, { room: 'y' });
      await join(s, pairB!, { room: 'y' });
      await join(s, cancelled!, { room: 'z' });
      await asRole(
        s,
        'authenticated',
        { sub: cancelled, role: 'authenticated' },
        'select public.matchmaker_cancel()',
      );
      await join(s, other!, { room: 'w' });
      await s.query(
        `insert into matchmaker.ticket_history (ticket_id, user_id, outcome, reason, pool, criteria, enqueued_at, ended_at)
         values (gen_random_uuid(), $1, 'expired', 'ttl', '{"room": "v"}', '{"room": "v"}',
                 clock_timestamp() - interval '41 days', clock_timestamp() - interval '40 days')`,
        [old],
      );
      const users = [waiting!, pairA!, pairB!, cancelled!, old!, other!, late!];
      const answers = async () =>
        Promise.all(
          users.map(async (u) => {
            const { server_time: _now, ...answer } = await state(s, u);
            return answer;
          }),
        );
      const stateBefore = await answers();
      const poolsBefore = (await s.query('select pool from matchmaker.pools order by pool')).rows;

      // Up to this migration only: later ones are tested by their own files.
      const upTo = { migrations: MIGRATIONS.filter((m) => m.version <= LIGHTER_VERSION) };
      const upgrade = await applyMigrations(s, upTo);
      expect(upgrade.applied).toEqual([LIGHTER_VERSION]);
      expect(upgrade.version).toBe(LIGHTER_VERSION);
      expect(await answers()).toEqual(stateBefore);
      expect((await s.query('select pool from matchmaker.pools order by pool')).rows).toEqual(poolsBefore);
      const triggers = await s.query(
        `select tgname from pg_trigger where tgrelid = 'matchmaker.tickets'::regclass and not tgisinternal`,
      );
      expect(triggers.rows).toEqual([{ tgname: 'tickets_register_pool' }]);

      // A ticket that waited before the upgrade is claimed by a join after it.
      const joined = await join(s, late!, { room: 'x' });
      expect(joined).toMatchObject({ status: 'matched', match: { partner_id: waiting } });
      // History written before the upgrade is still pruned.
      const step = await processOnce(s);
      expect(step.pruned).toBeGreaterThanOrEqual(1);
      expect(
        (await s.query('select count(*)::int as n from matchmaker.ticket_history where user_id = $1', [old]))
          .rows[0]?.n,
      ).toBe(0);

      const rerun = await applyMigrations(s, upTo);
      expect(rerun.applied).toEqual([]);
      expect(rerun.version).toBe(LIGHTER_VERSION);
    } finally {
      await db.drop();
    }
  });

  it('fresh apply records the version; a rerun is a no-op', async () => {
    const s = await current.client();
    const ledger = await s.query(`select name from matchmaker.schema_migrations where version = $1`, [
      LIGHTER_VERSION,
    ]);
    expect(ledger.rows).toEqual([{ name: 'matchmaker_queue_lighter_writes' }]);
    expect((await applyMigrations(s)).applied).toEqual([]);
  });

  it('the new and renamed helpers are internal: no role but the owner may execute them', async () => {
    const s = await current.client();
    const r = await s.query(
      `select f, r, has_function_privilege(r, f, 'execute') as can
       from unnest(array['matchmaker._heartbeat(uuid, uuid)', 'matchmaker._heartbeat_general(uuid, uuid)',
                         'matchmaker._register_pool()']) as f,
            unnest(array['anon', 'authenticated', 'service_role']) as r`,
    );
    expect(r.rows.filter((row) => row.can)).toEqual([]);
    expect(r.rows).toHaveLength(9);
    const wrapper = await s.query(
      `select has_function_privilege('authenticated', 'public.matchmaker_heartbeat(uuid)', 'execute') as auth,
              has_function_privilege('anon', 'public.matchmaker_heartbeat(uuid)', 'execute') as anon`,
    );
    expect(wrapper.rows[0]).toEqual({ auth: true, anon: false });
  });
});
