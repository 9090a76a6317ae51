/**
 * Migration 20261129000100 (busy pools): a maintenance step pairs only the registered pools that hold two tickets
 * at or after their head hint, instead of locking and searching every registered pool one call at a time.
 * - With 300 empty and 20 single-ticket pools registered around one busy pool, one step of the database before the
 *   migration calls the pairing function for 64 pools (max_pools_per_step) and pairs nothing, since the busy pool
 *   sorts after them; ours calls it once and pairs the busy pool in that step.
 * - Draining a mix of pools (busy, single, empty, drained, with expired and stale tickets, some paired past their
 *   head) gives the same matches, history and waiting tickets as before, in fewer steps.
 */
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import {
  configure,
  databasesAround,
  drain,
  fixedUsers,
  insertWaiting,
  join,
  registerEmptyPools,
  userNamer,
} from './queueDb';

const BUSY_POOLS_VERSION = '20261129000100';

const dbs = databasesAround(BUSY_POOLS_VERSION);

const USERS = fixedUsers(60);
const who = userNamer(USERS);
const TRUNCATE = `truncate matchmaker.tickets, matchmaker.ticket_history, matchmaker.matches, matchmaker.pool_heads,
  matchmaker.pools, realtime.messages`;

/** Empty queue, default settings but for a 'room' criteria key. */
async function reset(s: pg.Client, settings: Record<string, unknown> = {}): Promise<void> {
  await s.query(TRUNCATE);
  await configure(s, {
    criteria_keys: [{ key: 'room' }],
    max_pools_per_step: 64,
    heartbeat_timeout: '30 seconds',
    ticket_ttl: '5 minutes',
    ...settings,
  });
  // The stale sweep runs at most every heartbeat_timeout / 3: let the next step run it.
  await s.query(`update matchmaker.maintenance_state set stale_swept_at = now() - interval '1 day'`);
}

/** Calls of the pairing functions made by one maintenance step, counted by the backend in its transaction. */
async function pairingCallsOfOneStep(s: pg.Client): Promise<{ calls: number; pairs: number; pools: number }> {
  await s.query('begin');
  try {
    await s.query(`set local track_functions = 'all'`);
    const step = await s.query<{ r: { pairs: number; pools: number } }>(
      'select matchmaker._maintenance_step(1000, null) as r',
    );
    const calls = await s.query<{ calls: string | null }>(
      `select sum(calls) as calls from pg_catalog.pg_stat_xact_user_functions
       where schemaname = 'matchmaker' and funcname in ('_pair_pool', '_pair_pool_shared')`,
    );
    await s.query('commit');
    return {
      calls: Number(calls.rows[0]?.calls ?? 0),
      pairs: step.rows[0]!.r.pairs,
      pools: step.rows[0]!.r.pools,
    };
  } catch (error) {
    await s.query('rollback');
    throw error;
  }
}

describe('a maintenance step pairs only the pools that can pair', () => {
  it('skips empty and single-ticket pools in the statement that reads the registry (before: one call per pool)', async () => {
    const [before, ours] = await Promise.all(
      [dbs.before, dbs.current].map(async (db) => {
        const s = await db.client();
        await reset(s);
        await registerEmptyPools(s, 300, 'a');
        for (let i = 0; i < 20; i += 1) await join(s, USERS[i]!, { room: `m${String(i).padStart(2, '0')}` });
        await insertWaiting(s, USERS.slice(20, 30), { room: 'z-busy' });
        const step = await pairingCallsOfOneStep(s);
        const left = await s.query('select count(*)::int as n from matchmaker.tickets');
        return { ...step, waiting: left.rows[0].n as number };
      }),
    );
    // Before: the first 64 registered pools (max_pools_per_step), all empty or single: nothing paired yet.
    expect(before).toEqual({ calls: 64, pairs: 0, pools: 64, waiting: 30 });
    // Ours: only the busy pool qualifies; its 10 tickets pair in this one step, the 20 single tickets stay.
    expect(ours).toEqual({ calls: 1, pairs: 5, pools: 1, waiting: 20 });
  });

  it('drains a mix of pools into the same matches, history and waiting tickets as before, in fewer steps', async () => {
    const outcomes = [];
    for (const db of [dbs.before, dbs.current]) {
      const s = await db.client();
      await reset(s);
      await registerEmptyPools(s, 150, 'a');
      let u = 0;
      const next = () => USERS[u++]!;
      // Busy pools of 2, 5 and 12 tickets; single-ticket pools (joins wait alone); a pool whose head moved up
      // (joins paired in it) with a backlog after it; expired and stale tickets beside live ones.
      await insertWaiting(s, [next(), next()], { room: 'b-two' });
      await insertWaiting(s, Array.from({ length: 5 }, next), { room: 'b-five' });
      await insertWaiting(s, Array.from({ length: 12 }, next), { room: 'b-twelve' });
      for (let i = 0; i < 6; i += 1) await join(s, next(), { room: `single-${i}` });
      for (let i = 0; i < 8; i += 1) await join(s, next(), { room: 'drained' });
      await insertWaiting(s, Array.from({ length: 3 }, next), { room: 'drained' });
      await insertWaiting(s, [next()], { room: 'c-expiry' }, { expired: true });
      await insertWaiting(s, [next()], { room: 'c-expiry' });
      await insertWaiting(s, [next(), next()], { room: 'c-stale' }, { stale: true });
      const steps = await drain(s, 3);
      const matches = await s.query(
        `select m.user_a, m.user_b, m.pool from matchmaker.matches as m order by m.pool, m.user_a`,
      );
      const history = await s.query(
        `select h.user_id, h.outcome, h.reason, h.partner_id, h.pool from matchmaker.ticket_history as h
         order by h.pool, h.user_id`,
      );
      const waiting = await s.query('select user_id, pool from matchmaker.tickets order by pool, seq');
      outcomes.push({
        steps: steps.length,
        sum: steps.reduce(
          (acc, r) => ({
            pairs: acc.pairs + r.pairs,
            expired: acc.expired + r.expired,
            disconnected: acc.disconnected + r.disconnected,
          }),
          { pairs: 0, expired: 0, disconnected: 0 },
        ),
        matches: matches.rows.map((r) => ({ a: who(r.user_a), b: who(r.user_b), pool: r.pool })),
        history: history.rows.map((r) => ({ ...r, user_id: who(r.user_id), partner_id: who(r.partner_id) })),
        waiting: waiting.rows.map((r) => ({ user: who(r.user_id), pool: r.pool })),
      });
    }
    const [before, ours] = outcomes as [(typeof outcomes)[number], (typeof outcomes)[number]];
    expect(ours.matches).toEqual(before.matches);
    expect(ours.history).toEqual(before.history);
    expect(ours.waiting).toEqual(before.waiting);
    expect(ours.sum).toEqual(before.sum);
    // Pairs by the steps: 1 + 2 + 6 in the busy pools, 1 in the drained one; the expired ticket retired, the two
    // stale ones disconnected; the single-ticket pools, b-five's last and c-expiry's live ticket still waiting.
    expect(ours.sum.pairs).toBe(10);
    expect(ours.sum.expired).toBe(1);
    expect(ours.sum.disconnected).toBe(2);
    expect(ours.waiting.map((w) => w.pool)).toEqual(
      expect.arrayContaining(['{"room": "single-0"}', '{"room": "c-expiry"}', '{"room": "b-five"}']),
    );
    expect(ours.steps).toBeLessThan(before.steps);
  });

  it('a step resumes after its cursor and still reaches every busy pool when more than max_pools_per_step qualify', async () => {
    const s = await dbs.current.client();
    await reset(s, { max_pools_per_step: 2 });
    await registerEmptyPools(s, 50, 'a');
    // A backlog of 5 pools of 2 waiting tickets.
    for (let i = 0; i < 5; i += 1) await insertWaiting(s, USERS.slice(2 * i, 2 * i + 2), { room: `p${i}` });
    await registerEmptyPools(s, 50, 'q');
    const steps = await drain(s, 1000);
    expect(steps[0]).toMatchObject({ pairs: 2, pools: 2, more: true, resume_after: '{"room": "p1"}' });
    expect(steps.map((r) => r.pairs)).toEqual([2, 2, 1]);
    expect((await s.query('select count(*)::int as n from matchmaker.tickets')).rows[0].n).toBe(0);
  });
});
