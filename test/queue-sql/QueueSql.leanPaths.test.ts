/**
 * Migration 20261128000500 (lean hot paths): each faster path answers exactly like the path it replaces.
 * - the criteria fast path returns what the general normalisation returns (and is the one taken);
 * - matchmaker_state answers like the 20261128000100 state read over every branch;
 * - the batch pairs a chunk in one statement with the same pairs the FIFO loop makes, and falls back to the
 *   loop when the host hook refuses a pair;
 * - broadcast rows carry the row id in the payload, as Supabase's realtime.send() does;
 * - the pg_cron 1.5+ branch registers a seconds schedule. pg_cron 1.5 is NOT installed here (Debian ships 1.4):
 *   that test uses a stand-in `cron` schema that records cron.schedule() calls and a stand-in version function;
 *   the real 1.4 path runs in QueueSql.pgCron.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CRITERIA_INPUTS, CRITERIA_KEY_SETS } from './criteriaCases';
import {
  CRON_STAND_IN,
  cancel,
  configure,
  createQueueDb,
  databasesAround,
  fixedUsers,
  insertWaiting,
  join,
  newUser,
  processOnce,
  type QueueDb,
  type RpcState,
  type Session,
  state,
  userNamer,
} from './queueDb';

const LEAN_VERSION = '20261128000500';

const dbs = databasesAround(LEAN_VERSION);

const USERS = fixedUsers(40);
const TICKETS = Array.from({ length: 8 }, (_, i) => `00000000-0000-4000-9000-${String(i).padStart(12, '0')}`);
const who = userNamer(USERS);

async function errorOf(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
    return 'no error';
  } catch (error) {
    const e = error as { code?: string; message?: string };
    return `${e.code}: ${e.message}`;
  }
}

describe('criteria fast path', () => {
  it('returns what the general normalisation returns, errors included, for every key set and input', async () => {
    const s = await dbs.current.client();
    let compared = 0;
    for (const keys of CRITERIA_KEY_SETS) {
      for (const input of CRITERIA_INPUTS) {
        const call = (fn: string) =>
          s
            .query(`select n.pool, n.criteria from matchmaker.${fn}($1::jsonb, $2::jsonb) as n`, [
              input,
              JSON.stringify(keys),
            ])
            .then((r) => r.rows[0]);
        const [fast, general] = [
          await call('_normalize_criteria').catch((e: unknown) => errorOf(() => Promise.reject(e))),
          await call('_normalize_criteria_general').catch((e: unknown) => errorOf(() => Promise.reject(e))),
        ];
        expect(fast, `${JSON.stringify(keys)} ${input}`).toEqual(general);
        compared += 1;
      }
    }
    expect(compared).toBe(CRITERIA_KEY_SETS.length * CRITERIA_INPUTS.length);
  });

  it('is the path a plain exact-key join takes (the general function is not called for it)', async () => {
    const s = await dbs.current.client();
    await configure(s, { criteria_keys: [{ key: 'room' }] });
    await s.query(`set track_functions = 'all'`);
    await s.query('begin');
    const calls = async () =>
      (
        await s.query(
          `select coalesce(pg_stat_get_xact_function_calls('matchmaker._normalize_criteria_general(jsonb, jsonb)'::regprocedure), 0)::int as general,
                  coalesce(pg_stat_get_xact_function_calls('matchmaker._normalize_criteria(jsonb, jsonb)'::regprocedure), 0)::int as fast`,
        )
      ).rows[0] as { general: number; fast: number };
    const before = await calls();
    await s.query(`select matchmaker._join(gen_random_uuid(), '{"room":"lean"}'::jsonb, null)`);
    await s.query(`select matchmaker._join(gen_random_uuid(), '{"room":7}'::jsonb, null)`);
    const after = await calls();
    await s.query('rollback');
    await s.query('reset track_functions');
    // The string value takes the fast path, which since 20261128000800 the join tests itself
    // (matchmaker._criteria_is_normal, not _normalize_criteria); the number fails that test and is normalised
    // by the general function, through _normalize_criteria.
    expect({ fast: after.fast - before.fast, general: after.general - before.general }).toEqual({
      fast: 1,
      general: 1,
    });
  });
});

/** A state answer with its random ids and instants reduced to what must match between two databases. */
function describeState(r: RpcState) {
  return {
    status: r.status,
    result: r.result,
    reason: r.reason,
    partner: who(r.match?.partner_id),
    matchCriteria: r.match?.criteria ?? null,
    matchTimeIsEnd: r.match ? r.match.created_at === r.ticket?.ended_at : null,
    ticket: r.ticket
      ? {
          id: TICKETS.includes(r.ticket.id) ? `t${TICKETS.indexOf(r.ticket.id)}` : 'generated',
          criteria: r.ticket.criteria,
          pool: r.ticket.pool,
          keys: Object.keys(r.ticket).sort(),
        }
      : null,
    topic: who(r.topic.slice('matchmaker:user:'.length)),
    heartbeat: r.heartbeat_interval_ms,
    keys: Object.keys(r).sort(),
    serverTime: typeof r.server_time === 'string' && r.server_time.length > 0,
  };
}

async function stateScenario(db: QueueDb): Promise<unknown[]> {
  const s = await db.client();
  await configure(s, { criteria_keys: [{ key: 'room' }], heartbeat_timeout: '30 seconds' });
  const [a, b, c, d] = [USERS[0]!, USERS[1]!, USERS[2]!, USERS[3]!];
  const out: unknown[] = [];
  const look = async (uid: string, ticket?: string) => {
    out.push(await errorOf(async () => out.push(describeState(await state(s, uid, ticket)))));
  };
  await look(a); // idle
  await join(s, a, { room: 'x' }, TICKETS[0]);
  await look(a); // waiting
  await look(a, TICKETS[0]); // waiting, by ticket id
  await look(b, TICKETS[0]); // someone else's open ticket
  await join(s, b, { room: 'x' }, TICKETS[1]);
  await look(a); // matched (history, most recent)
  await look(b, TICKETS[1]); // matched, by ticket id
  await look(a, TICKETS[1]); // someone else's finished ticket
  await join(s, c, { room: 'y' }, TICKETS[2]);
  await cancel(s, c);
  await look(c); // cancelled
  await join(s, d, { room: 'z' }, TICKETS[3]);
  await s.query(
    `update matchmaker.tickets set expires_at = clock_timestamp() - interval '1 second' where user_id = $1`,
    [d],
  );
  await look(d); // open but past its TTL: expired
  await look(d, TICKETS[4]); // unknown ticket id: idle
  await configure(s, { heartbeat_timeout: null });
  await look(a); // no heartbeat interval
  out.push(
    await errorOf(() =>
      s
        .query(`begin; set local role authenticated; select public.matchmaker_state(); commit`)
        .finally(() => s.query('rollback')),
    ),
  );
  return out;
}

describe('matchmaker_state', () => {
  it('answers exactly like the state read of 20261128000100 over every branch', async () => {
    const [before, after] = [await stateScenario(dbs.before), await stateScenario(dbs.current)];
    expect(after).toEqual(before);
    const statuses = (after as ({ status?: string } | string)[])
      .filter((x): x is { status: string } => typeof x === 'object' && x !== null)
      .map((x) => x.status);
    expect(new Set(statuses)).toEqual(new Set(['idle', 'waiting', 'matched', 'cancelled', 'expired']));
    expect(after.filter((x) => typeof x === 'string' && x.startsWith('MM409')).length).toBe(2);
    expect(after.filter((x) => typeof x === 'string' && x.startsWith('42501')).length).toBe(1);
  });

  it('is still STABLE and SECURITY DEFINER, executable by authenticated only', async () => {
    const r = await dbs.current.pool.query(
      `select p.provolatile, p.prosecdef, p.proconfig,
              has_function_privilege('authenticated', p.oid, 'execute') as auth,
              has_function_privilege('anon', p.oid, 'execute') as anon
       from pg_proc as p where p.oid = 'public.matchmaker_state(uuid)'::regprocedure`,
    );
    expect(r.rows[0]).toEqual({
      provolatile: 's',
      prosecdef: true,
      proconfig: ['search_path=""'],
      auth: true,
      anon: false,
    });
  });
});

async function batchScenario(db: QueueDb, refuse: readonly [number, number] | null): Promise<unknown> {
  const s = await db.client();
  await s.query(
    'truncate matchmaker.tickets, matchmaker.ticket_history, matchmaker.matches, matchmaker.pool_heads, realtime.messages',
  );
  await configure(s, { criteria_keys: [{ key: 'room' }], heartbeat_timeout: '30 seconds' });
  await s.query(
    `create or replace function matchmaker.is_eligible(a uuid, b uuid) returns boolean language sql stable
     set search_path = '' as $$ select ${refuse ? `not ('${USERS[refuse[0]]}' in (a, b) and '${USERS[refuse[1]]}' in (a, b))` : 'true'} $$`,
  );
  // 21 tickets in one pool, in this order; u5 expired and u9 stale are skipped (and retired by the sweep).
  await insertWaiting(
    s,
    USERS.slice(0, 21),
    { room: 'b' },
    {
      pool: '{"room":"b"}',
      expired: (i) => i === 5,
      stale: (i) => i === 9,
    },
  );
  const steps = [await processOnce(s, 4), await processOnce(s, 1000)];
  const matches = await s.query(`select user_a, user_b from matchmaker.matches order by created_at, user_a`);
  const history = await s.query(
    `select user_id, outcome, partner_id from matchmaker.ticket_history order by user_id`,
  );
  const waiting = await s.query(`select user_id from matchmaker.tickets order by seq`);
  const heads = await s.query(
    `select count(*)::int as n from matchmaker.tickets as t
     where t.seq < (select h.head_seq from matchmaker.pool_heads as h where h.pool = t.pool order by h.id desc limit 1)`,
  );
  return {
    pairs: steps.map((x) => x.pairs),
    matches: matches.rows.map((r) => [who(r.user_a), who(r.user_b)]),
    history: history.rows.map((r) => [who(r.user_id), r.outcome, who(r.partner_id)]),
    waiting: waiting.rows.map((r) => who(r.user_id)),
    openBelowHead: heads.rows[0].n,
  };
}

describe('batch pairing', () => {
  it('pairs consecutive live tickets in one statement, the same pairs as the FIFO loop', async () => {
    const [before, after] = [await batchScenario(dbs.before, null), await batchScenario(dbs.current, null)];
    expect(after).toEqual(before);
    const r = after as { pairs: number[]; matches: string[][]; waiting: string[] };
    expect(r.pairs).toEqual([4, 5]);
    expect(r.matches[0]).toEqual(['u0', 'u1']);
    expect(r.matches[2]).toEqual(['u4', 'u6']); // u5 (expired) skipped
    expect(r.waiting).toEqual(['u20']);
  });

  it('falls back to the loop when the host hook refuses a consecutive pair, with the same pairs as before', async () => {
    const [before, after] = [
      await batchScenario(dbs.before, [2, 3]),
      await batchScenario(dbs.current, [2, 3]),
    ];
    expect(after).toEqual(before);
    const r = after as { matches: string[][] };
    // u2 and u3 may not meet: u3 waits for u4 instead (FIFO among the pairs the hook allows).
    expect(r.matches).toContainEqual(['u2', 'u4']);
    expect(r.matches.flat()).not.toContain(undefined);
  });

  it('with a flexible key the chunk goes to the loop (same pairs as before)', async () => {
    const run = async (db: QueueDb) => {
      const s = await db.client();
      await s.query(
        'truncate matchmaker.tickets, matchmaker.ticket_history, matchmaker.matches, matchmaker.pool_heads',
      );
      await configure(s, { criteria_keys: [{ key: 'tz', match: 'flexible' }] });
      await s.query(`create or replace function matchmaker.is_eligible(a uuid, b uuid) returns boolean
        language sql stable set search_path = '' as 'select true'`);
      const zones = ['eu', 'us', '*', 'us', 'eu', 'eu'];
      await insertWaiting(s, USERS.slice(0, 6), (i) => ({ tz: zones[i] }), { pool: '{}' });
      await processOnce(s, 1000);
      const m = await s.query(`select user_a, user_b from matchmaker.matches order by user_a`);
      return m.rows.map((r) => [who(r.user_a), who(r.user_b)]);
    };
    const [before, after] = [await run(dbs.before), await run(dbs.current)];
    expect(after).toEqual(before);
    expect(after.length).toBeGreaterThanOrEqual(2);
  });
});

describe('broadcast rows', () => {
  it("carry the row id as the payload's id, as Supabase's realtime.send() writes them", async () => {
    const s = await dbs.current.client();
    await s.query(
      'truncate matchmaker.tickets, matchmaker.ticket_history, matchmaker.matches, realtime.messages',
    );
    await configure(s, { criteria_keys: [] });
    await join(s, USERS[30]!);
    await join(s, USERS[31]!);
    await insertWaiting(s, Array.from({ length: 10 }, newUser), {});
    await processOnce(s, 1000);
    const r = await s.query(
      `select count(*)::int as n, count(*) filter (where payload->>'id' = id::text)::int as with_id,
              count(*) filter (where private and extension = 'broadcast' and event = 'matched')::int as shape
       from realtime.messages`,
    );
    expect(r.rows[0]).toEqual({ n: 12, with_id: 12, shape: 12 });
  });
});

describe('pg_cron scheduling branches (stand-in cron schema; real pg_cron 1.5 not available here)', () => {
  let db: QueueDb;
  let s: Session;
  beforeAll(async () => {
    db = await createQueueDb({ setupSql: CRON_STAND_IN });
    s = await db.client();
  });
  afterAll(async () => {
    await db?.drop();
  });
  const reportVersion = (version: string | null) =>
    s.query(
      `create or replace function matchmaker._pg_cron_version() returns text language sql stable
       set search_path = '' as $$ select ${version === null ? 'null::text' : `'${version}'::text`} $$`,
    );
  const jobs = async () =>
    (await s.query('select jobname, schedule, command from cron.job order by jobid')).rows as {
      jobname: string;
      schedule: string;
      command: string;
    }[];

  it('1.5 and later register a seconds schedule whose command drains and returns; 1.4 the per-minute loop', async () => {
    await reportVersion('1.5.2');
    await s.query(`select matchmaker.schedule_maintenance(interval '5 seconds')`);
    expect(await jobs()).toEqual([
      {
        jobname: 'matchmaker-maintenance',
        schedule: '5 seconds',
        command: 'call matchmaker.run_maintenance()',
      },
    ]);
    // Rescheduling replaces the job (unschedule, then schedule); intervals are clamped to 1-59 s.
    await s.query(`select matchmaker.schedule_maintenance(interval '90 seconds')`);
    expect(await jobs()).toEqual([
      {
        jobname: 'matchmaker-maintenance',
        schedule: '59 seconds',
        command: 'call matchmaker.run_maintenance()',
      },
    ]);
    await reportVersion('2.0');
    await s.query(`select matchmaker.schedule_maintenance(interval '2 seconds')`);
    expect((await jobs()).map((j) => j.schedule)).toEqual(['2 seconds']);
    await reportVersion('1.4-1');
    await s.query(`select matchmaker.schedule_maintenance(interval '5 seconds')`);
    expect(await jobs()).toEqual([
      {
        jobname: 'matchmaker-maintenance',
        schedule: '* * * * *',
        command: `call matchmaker.run_maintenance('50 seconds'::interval, '5 seconds'::interval)`,
      },
    ]);
    // The 1.5+ command, run as pg_cron would run it, pairs a waiting backlog.
    await reportVersion('1.5.0');
    await s.query(`select matchmaker.schedule_maintenance()`);
    const [job] = await jobs();
    await insertWaiting(s, Array.from({ length: 6 }, newUser), {});
    await s.query(job!.command);
    expect((await s.query('select count(*)::int as n from matchmaker.matches')).rows[0].n).toBe(3);
    expect(await s.query('select matchmaker.unschedule_maintenance() as r').then((r) => r.rows[0].r)).toBe(
      true,
    );
    expect(await jobs()).toEqual([]);
  });

  it('without pg_cron it refuses to schedule (55000) and unscheduling is a no-op', async () => {
    await reportVersion(null);
    expect(await errorOf(() => s.query('select matchmaker.schedule_maintenance()'))).toMatch(
      /^55000: matchmaker: pg_cron is not installed/,
    );
    expect(await s.query('select matchmaker.unschedule_maintenance() as r').then((r) => r.rows[0].r)).toBe(
      false,
    );
  });
});
