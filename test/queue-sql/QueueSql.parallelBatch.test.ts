/**
 * Migration 20261128000900 (parallel batch):
 * - the batch writes the same rows, JSON and notifications as before (one worker; serial and shared paths, a
 *   refusing hook, a flexible key, the realtime.messages fallback), compared with a database without it;
 * - two steps pair the same pool at once (the second does not wait for the first), taking the next tickets, so
 *   the pairs are exactly the consecutive ones one worker makes (FIFO); a join waiting for the pool queues the
 *   later step behind it (no deadlock) and claims the oldest waiting ticket; a replaced hook keeps one worker;
 * - 4 workers drain two pools while heartbeats write the same tickets: exactly the consecutive pairs;
 * - 4 workers drain while users join, cancel and heartbeat: nobody in two matches, no self match, every ticket
 *   ends once (with one notification), at most one waiting ticket per pool once quiet;
 * - schedule_maintenance(every, workers) registers one pg_cron job per worker (stand-in cron schema).
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CRON_STAND_IN,
  cancel,
  configure,
  createQueueDb,
  databasesAround,
  fixedUsers,
  heartbeat,
  insertWaiting,
  join,
  processOnce,
  type QueueDb,
  type Session,
  userNamer,
} from './queueDb';

const PARALLEL_VERSION = '20261128000900';

const dbs = databasesAround(PARALLEL_VERSION);

const USERS = fixedUsers(40);
const who = userNamer(USERS);
const TRUNCATE =
  'truncate matchmaker.tickets, matchmaker.ticket_history, matchmaker.matches, matchmaker.pool_heads, realtime.messages';

/** Everything the batch wrote, with ids replaced by user names and checked for consistency in SQL. */
async function written(s: Session): Promise<unknown> {
  const matches = await s.query(
    `select m.user_a, m.user_b, m.pool, m.criteria,
            (select count(*) from matchmaker.ticket_history as h
             where h.match_id = m.id and h.ended_at = m.created_at and h.outcome = 'matched'
               and ((h.ticket_id = m.ticket_a and h.user_id = m.user_a and h.partner_id = m.user_b)
                 or (h.ticket_id = m.ticket_b and h.user_id = m.user_b and h.partner_id = m.user_a)))::int as history
     from matchmaker.matches as m order by m.user_a`,
  );
  const history = await s.query(
    `select h.user_id, h.outcome, h.reason, h.partner_id, h.match_criteria, h.pool, h.criteria,
            h.enqueued_at = t.enqueued_at as enqueued_kept
     from matchmaker.ticket_history as h join pg_temp.before_tickets as t on t.id = h.ticket_id
     order by h.user_id`,
  );
  const messages = await s.query(
    `select m.topic, m.event, m.private, m.extension,
            m.payload - 'id' - 'ticket_id' - 'match' - 'at' as payload,
            (m.payload ->> 'at')::timestamptz = h.ended_at as at_ok,
            (m.payload -> 'match') - 'id' - 'created_at' as match,
            m.payload ->> 'id' = m.id::text as id_is_row_id,
            (m.payload ->> 'ticket_id')::uuid = h.ticket_id as ticket_ok,
            (m.payload -> 'match' ->> 'id')::uuid = h.match_id as match_ok,
            (m.payload -> 'match' ->> 'created_at')::timestamptz = h.ended_at as created_ok
     from realtime.messages as m
     left join matchmaker.ticket_history as h on h.user_id = (m.payload ->> 'user_id')::uuid
     order by m.topic, m.event`,
  );
  const waiting = await s.query('select user_id from matchmaker.tickets order by seq');
  const heads = await s.query(
    `select count(*)::int as n from matchmaker.tickets as t
     where t.seq < (select h.head_seq from matchmaker.pool_heads as h where h.pool = t.pool order by h.id desc limit 1)`,
  );
  return {
    matches: matches.rows.map((r) => ({ ...r, user_a: who(r.user_a), user_b: who(r.user_b) })),
    history: history.rows.map((r) => ({ ...r, user_id: who(r.user_id), partner_id: who(r.partner_id) })),
    messages: messages.rows.map((r) => ({
      ...r,
      topic: who(String(r.topic).replace('matchmaker:user:', '')),
      payload: { ...r.payload, user_id: who(r.payload.user_id) },
      match: r.match === null ? null : { ...r.match, partner_id: who(r.match.partner_id) },
    })),
    waiting: waiting.rows.map((r) => who(r.user_id)),
    openBelowHead: heads.rows[0].n,
  };
}

interface Scenario {
  /** Host hook refusing this pair of users (null: the shipped default). */
  refuse?: readonly [number, number];
  /** A ticket (index) that has expired: the first step sweeps its pool under the exclusive lock. */
  expired?: number;
  /** Messages to this user's topic are refused by realtime.messages (the fallback path). */
  refuseTopicOf?: number;
}

/** 21 tickets in one pool (u9 stale), two processor steps of 4 and 1,000 pairs; what was written. */
async function batchScenario(db: QueueDb, scenario: Scenario): Promise<unknown> {
  const s = await db.client();
  await s.query(TRUNCATE);
  await configure(s, { criteria_keys: [{ key: 'room' }], heartbeat_timeout: '30 seconds' });
  const refuse = scenario.refuse;
  await s.query(
    `create or replace function matchmaker.is_eligible(a uuid, b uuid) returns boolean language sql stable
     set search_path = '' as $$ select ${refuse ? `not ('${USERS[refuse[0]]}' in (a, b) and '${USERS[refuse[1]]}' in (a, b))` : 'true'} $$`,
  );
  await insertWaiting(
    s,
    USERS.slice(0, 21),
    { room: 'b' },
    {
      pool: '{"room":"b"}',
      expired: (i) => i === scenario.expired,
      stale: (i) => i === 9,
    },
  );
  await s.query('create temp table if not exists before_tickets (id uuid, enqueued_at timestamptz)');
  await s.query('truncate pg_temp.before_tickets');
  await s.query('insert into pg_temp.before_tickets select id, enqueued_at from matchmaker.tickets');
  if (scenario.refuseTopicOf !== undefined) {
    await s.query(
      `alter table realtime.messages add constraint sm_refuse check (topic <> 'matchmaker:user:${USERS[scenario.refuseTopicOf]}') not valid`,
    );
  }
  try {
    const steps = [await processOnce(s, 4), await processOnce(s, 1000)];
    return { pairs: steps.map((x) => x.pairs), ...((await written(s)) as object) };
  } finally {
    if (scenario.refuseTopicOf !== undefined) {
      await s.query('alter table realtime.messages drop constraint sm_refuse');
    }
  }
}

describe('one worker: the same rows, JSON and notifications as before', () => {
  const cases: [string, Scenario][] = [
    ['shared path (default hook, no expired ticket)', {}],
    ['exclusive path (the first step sweeps an expired ticket)', { expired: 5 }],
    ['a host hook refusing a consecutive pair (general loop)', { refuse: [2, 3] }],
    ['a refused realtime.messages insert (fallback through realtime.send)', { refuseTopicOf: 7 }],
  ];
  for (const [name, scenario] of cases) {
    it(name, async () => {
      const before = await batchScenario(dbs.before, scenario);
      const after = await batchScenario(dbs.current, scenario);
      expect(after).toEqual(before);
      const r = after as {
        pairs: number[];
        matches: { history: number }[];
        messages: { event: string; id_is_row_id: boolean | null }[];
      };
      expect(r.pairs[0]).toBe(4);
      expect(r.matches.every((m) => m.history === 2)).toBe(true);
      const matched = r.messages.filter((m) => m.event === 'matched');
      expect(matched.length).toBe(2 * r.matches.length - (scenario.refuseTopicOf === undefined ? 0 : 1));
      // realtime.send() of this test shape does not add the row id (Supabase's does since 20251103001201).
      if (scenario.refuseTopicOf === undefined) expect(matched.every((m) => m.id_is_row_id)).toBe(true);
    });
  }

  it('with a flexible key (general loop), the same pairs and rows as before', async () => {
    const run = async (db: QueueDb) => {
      const s = await db.client();
      await s.query(TRUNCATE);
      await configure(s, { criteria_keys: [{ key: 'tz', match: 'flexible' }] });
      await s.query(`create or replace function matchmaker.is_eligible(a uuid, b uuid) returns boolean
        language sql stable set search_path = '' as 'select true'`);
      const zones = ['eu', 'us', '*', 'us', 'eu', 'eu'];
      await insertWaiting(s, USERS.slice(0, 6), (i) => ({ tz: zones[i] }), { pool: '{}' });
      await s.query('create temp table if not exists before_tickets (id uuid, enqueued_at timestamptz)');
      await s.query('truncate pg_temp.before_tickets');
      await s.query('insert into pg_temp.before_tickets select id, enqueued_at from matchmaker.tickets');
      await processOnce(s, 1000);
      return written(s);
    };
    const [before, after] = [await run(dbs.before), await run(dbs.current)];
    expect(after).toEqual(before);
    expect((after as { matches: unknown[] }).matches.length).toBeGreaterThanOrEqual(2);
  });
});

/** Bulk-loads `n` tickets into pool room=`room`, in this order; returns their user ids (oldest first). */
async function load(s: Session, room: string, n: number): Promise<string[]> {
  const users = Array.from({ length: n }, () => randomUUID());
  await insertWaiting(s, users, { room });
  return users;
}

/** The matches as pairs of ranks in `order` (0-based), sorted. */
async function pairRanks(s: Session, order: readonly string[]): Promise<[number, number][]> {
  const rank = new Map(order.map((u, i) => [u, i]));
  const r = await s.query('select user_a, user_b from matchmaker.matches');
  return r.rows
    .map((x) => [rank.get(x.user_a) ?? -1, rank.get(x.user_b) ?? -1] as [number, number])
    .sort((a, b) => a[0] - b[0]);
}

const consecutive = (from: number, pairs: number): [number, number][] =>
  Array.from({ length: pairs }, (_, i) => [from + 2 * i, from + 2 * i + 1]);

const step = async (s: Session, maxPairs: number) =>
  (await s.query('select matchmaker._maintenance_step($1, null) as r', [maxPairs])).rows[0].r as {
    pairs: number;
  };

describe('several workers on one pool', () => {
  let db: QueueDb;
  let admin: pg.Client;
  beforeAll(async () => {
    db = await createQueueDb();
    admin = await db.client();
  });
  afterAll(async () => {
    await db?.drop();
  });
  const reset = async () => {
    await admin.query(TRUNCATE);
    await configure(admin, {
      criteria_keys: [{ key: 'room' }],
      heartbeat_timeout: '1 hour',
      ticket_ttl: '1 hour',
      batch_pairs: 1000,
    });
    await admin.query(`create or replace function matchmaker.is_eligible(a uuid, b uuid) returns boolean
      language sql stable set search_path = '' as 'select true'`);
  };

  it('a second step pairs the same pool while the first is still open, taking the next tickets (FIFO)', async () => {
    await reset();
    const order = await load(admin, 'a', 101);
    const [a, b] = [await db.client(), await db.client()];
    await a.query('begin');
    expect((await step(a, 10)).pairs).toBe(10);
    await b.query(`set lock_timeout = '5s'`);
    // Would wait for the first step's commit under the exclusive lock (lock_timeout: an error).
    expect((await step(b, 10)).pairs).toBe(10);
    await a.query('commit');
    expect((await step(b, 1000)).pairs).toBe(30);
    expect(await pairRanks(admin, order)).toEqual(consecutive(0, 50));
    const left = await admin.query('select user_id from matchmaker.tickets');
    expect(left.rows.map((r) => r.user_id)).toEqual([order[100]]);
  });

  it('a join waiting for the pool goes before a later step (no deadlock) and claims the oldest waiting ticket', async () => {
    await reset();
    const order = await load(admin, 'a', 60);
    const [a, j, b] = [await db.client(), await db.client(), await db.client()];
    await a.query('begin');
    expect((await step(a, 10)).pairs).toBe(10);
    const joiner = randomUUID();
    const joined = join(j, joiner, { room: 'a' });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const later = step(b, 10);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const waiting = await admin.query(
      `select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`,
    );
    expect(waiting.rows[0].n).toBe(2);
    await a.query('commit');
    const r = await joined;
    expect(r.status).toBe('matched');
    expect(r.match!.partner_id).toBe(order[20]);
    expect((await later).pairs).toBe(10);
    const ranks = await pairRanks(admin, order);
    expect(ranks).toEqual([...consecutive(0, 10), [20, -1], ...consecutive(21, 10)]);
  });

  it('a ticket whose heartbeat is being written is waited for, not skipped (it keeps its FIFO partner)', async () => {
    await reset();
    const order = await load(admin, 'a', 8);
    const [h, w] = [await db.client(), await db.client()];
    // A heartbeat in flight on the third ticket: its row is locked FOR NO KEY UPDATE until it commits.
    await h.query('begin');
    await h.query('update matchmaker.tickets set last_seen_at = clock_timestamp() where user_id = $1', [
      order[2],
    ]);
    const stepping = step(w, 1000);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const waiting = await admin.query(
      `select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`,
    );
    expect(waiting.rows[0].n).toBe(1);
    await h.query('commit');
    expect((await stepping).pairs).toBe(4);
    expect(await pairRanks(admin, order)).toEqual(consecutive(0, 4));
  });

  it('with a replaced eligibility hook, a second step waits for the first (one worker at a time)', async () => {
    await reset();
    await admin.query(`create or replace function matchmaker.is_eligible(a uuid, b uuid) returns boolean
      language sql stable set search_path = '' as 'select a <> b'`);
    await load(admin, 'a', 40);
    const [a, b] = [await db.client(), await db.client()];
    await a.query('begin');
    expect((await step(a, 5)).pairs).toBe(5);
    await b.query(`set lock_timeout = '300ms'`);
    await expect(step(b, 5)).rejects.toMatchObject({ code: '55P03' });
    await a.query('rollback');
    await b.query('reset lock_timeout');
  });

  it('4 workers drain two pools while heartbeats write the same tickets: exactly the consecutive pairs', {
    timeout: 60_000,
  }, async () => {
    await reset();
    await configure(admin, { batch_pairs: 7 });
    const pools = { a: await load(admin, 'a', 1001), b: await load(admin, 'b', 600) };
    const workers = await Promise.all(Array.from({ length: 4 }, () => db.client()));
    const beaters = await Promise.all(Array.from({ length: 3 }, () => db.client()));
    let done = false;
    let beats = 0;
    // Newest first, so most heartbeats find their ticket still waiting (the workers drain oldest first).
    const all = [...pools.a, ...pools.b].reverse();
    const beating = beaters.map(async (s, k) => {
      for (let i = k; !done; i += 3) {
        const r = await heartbeat(s, all[i % all.length]!);
        if (r.result === 'alive') beats += 1;
      }
    });
    await Promise.all(workers.map((s) => s.query('call matchmaker.run_maintenance()')));
    done = true;
    await Promise.all(beating);
    expect(beats).toBeGreaterThan(0);
    const ranksA = (await pairRanks(admin, pools.a)).filter(([x]) => x >= 0);
    const ranksB = (await pairRanks(admin, pools.b)).filter(([x]) => x >= 0);
    expect(ranksA).toEqual(consecutive(0, 500));
    expect(ranksB).toEqual(consecutive(0, 300));
    const left = await admin.query('select user_id from matchmaker.tickets');
    expect(left.rows.map((r) => r.user_id)).toEqual([pools.a[1000]]);
  });

  it('4 workers drain while users join, cancel and heartbeat: every ticket ends once, nobody twice, none stranded', {
    timeout: 120_000,
  }, async () => {
    await reset();
    await configure(admin, { batch_pairs: 5 });
    const preloaded = [...(await load(admin, 'a', 800)), ...(await load(admin, 'b', 401))];
    const workers = await Promise.all(Array.from({ length: 4 }, () => db.client()));
    const users = await Promise.all(Array.from({ length: 4 }, () => db.client()));
    let done = false;
    const joiners: string[] = [];
    const errors: unknown[] = [];
    const traffic = users.map(async (s, k) => {
      for (let i = 0; !done || i < 30; i += 1) {
        try {
          const pick = preloaded[(i * 13 + k * 101) % preloaded.length]!;
          if (k === 0) {
            const u = randomUUID();
            joiners.push(u);
            await join(s, u, { room: i % 2 === 0 ? 'a' : 'b' });
          } else if (k === 1) {
            await cancel(s, pick);
          } else {
            await heartbeat(s, pick);
          }
        } catch (error) {
          errors.push(error);
        }
      }
    });
    const runs = workers.map(async (s) => {
      for (let i = 0; i < 3; i += 1) await s.query('call matchmaker.run_maintenance()');
    });
    await Promise.all(runs);
    done = true;
    await Promise.all(traffic);
    // Quiet: one more pass by one worker (nothing left to pair if none was stranded).
    await admin.query('call matchmaker.run_maintenance()');
    expect(errors).toEqual([]);

    const everyone = [...preloaded, ...joiners];
    const r = await admin.query(
      `with u as (select unnest($1::uuid[]) as id)
       select
         (select count(*)::int from matchmaker.matches where user_a = user_b) as self,
         (select count(*)::int from (select x from (select user_a as x from matchmaker.matches
            union all select user_b from matchmaker.matches) as y group by x having count(*) > 1) as z) as twice,
         (select count(*)::int from u where (select count(*) from matchmaker.tickets as t where t.user_id = u.id)
            + (select count(*) from matchmaker.ticket_history as h where h.user_id = u.id) <> 1) as not_once,
         (select count(*)::int from matchmaker.ticket_history as h
            where (select count(*) from realtime.messages as m where m.topic = 'matchmaker:user:' || h.user_id::text) <> 1)
           as not_one_message,
         (select count(*)::int from matchmaker.matches as m
            where (select count(*) from matchmaker.ticket_history as h where h.match_id = m.id) <> 2) as bad_history,
         (select coalesce(max(n), 0)::int from (select count(*) as n from matchmaker.tickets group by pool) as p)
           as max_waiting_per_pool,
         (select count(*)::int from matchmaker.ticket_history where outcome = 'cancelled') as cancelled,
         (select count(*)::int from matchmaker.matches) as matches`,
      [everyone],
    );
    const row = r.rows[0];
    expect({ ...row, cancelled: row.cancelled > 0, matches: row.matches > 0 }).toEqual({
      self: 0,
      twice: 0,
      not_once: 0,
      not_one_message: 0,
      bad_history: 0,
      max_waiting_per_pool: row.max_waiting_per_pool <= 1 ? row.max_waiting_per_pool : -1,
      cancelled: true,
      matches: true,
    });
    const again = await processOnce(admin, 1000);
    expect(again.pairs).toBe(0);
  });
});

describe('matchmaker._hook_is_default()', () => {
  it('recognises the shipped hooks (000100 SQL, 000800 PL/pgSQL) and nothing else', async () => {
    const s = await dbs.current.client();
    const verdict = async (language: string, body: string) => {
      await s.query(
        `create or replace function matchmaker.is_eligible(a uuid, b uuid) returns boolean language ${language} stable
         set search_path = '' as $fn$${body}$fn$`,
      );
      return (await s.query('select matchmaker._hook_is_default() as r')).rows[0].r as boolean;
    };
    expect(await verdict('sql', '\n  select true\n')).toBe(true);
    expect(await verdict('plpgsql', '\n      begin\n        return true;\n      end\n      ')).toBe(true);
    expect(await verdict('sql', 'select a <> b')).toBe(false);
    expect(await verdict('sql', 'select true and a <> b')).toBe(false);
    expect(await verdict('plpgsql', 'begin return a <> b; end')).toBe(false);
    await verdict('sql', 'select true');
  });
});

describe('schedule_maintenance(every, workers) (stand-in cron schema)', () => {
  let db: QueueDb;
  let s: Session;
  beforeAll(async () => {
    db = await createQueueDb({ setupSql: CRON_STAND_IN });
    s = await db.client();
    await s.query(
      `create or replace function matchmaker._pg_cron_version() returns text language sql stable
       set search_path = '' as $$ select '1.5.2'::text $$`,
    );
  });
  afterAll(async () => {
    await db?.drop();
  });
  const jobs = async () =>
    (await s.query('select jobname, schedule, command from cron.job order by jobid')).rows as {
      jobname: string;
      schedule: string;
      command: string;
    }[];

  it('registers one job per worker with the same schedule; rescheduling and unscheduling remove them all', async () => {
    await s.query(`select matchmaker.schedule_maintenance(interval '5 seconds', 3)`);
    const command = 'call matchmaker.run_maintenance()';
    expect(await jobs()).toEqual([
      { jobname: 'matchmaker-maintenance', schedule: '5 seconds', command },
      { jobname: 'matchmaker-maintenance-2', schedule: '5 seconds', command },
      { jobname: 'matchmaker-maintenance-3', schedule: '5 seconds', command },
    ]);
    await s.query(`select matchmaker.schedule_maintenance(interval '2 seconds')`);
    expect(await jobs()).toEqual([{ jobname: 'matchmaker-maintenance', schedule: '2 seconds', command }]);
    await s.query(`select matchmaker.schedule_maintenance(interval '2 seconds', 2)`);
    expect((await jobs()).length).toBe(2);
    expect(await s.query('select matchmaker.unschedule_maintenance() as r').then((r) => r.rows[0].r)).toBe(
      true,
    );
    expect(await jobs()).toEqual([]);
    await expect(
      s.query(`select matchmaker.schedule_maintenance(interval '2 seconds', 0)`),
    ).rejects.toMatchObject({
      code: '22023',
    });
  });

  it('is for the owner only (not PUBLIC, anon, authenticated or service_role)', async () => {
    const r = await s.query(
      `select bool_or(has_function_privilege(r, 'matchmaker.schedule_maintenance(interval, integer)', 'execute')) as any
       from unnest(array['anon', 'authenticated', 'service_role']) as r`,
    );
    expect(r.rows[0].any).toBe(false);
  });
});
