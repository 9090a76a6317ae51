/**
 * Migration 20261128000400 (faster join): the fast path of matchmaker_join behaves exactly like the join of
 * 20261128000100 (same answers, rows and notifications over a scenario that visits every branch), and
 * notifications written in one insert keep realtime.send()'s contract (same rows; a failure never aborts a match).
 */
import { describe, expect, it } from 'vitest';
import {
  cancel,
  configure,
  databasesAround,
  fixedUsers,
  insertWaiting,
  join,
  newUser,
  type QueueDb,
  type RpcState,
  userNamer,
} from './queueDb';

// Only the first queue migration: the join of 20261128000100 (the next migration is 000200, presence).
const dbs = databasesAround('20261128000200');

type Step =
  | { join: number; criteria?: Record<string, string>; ticket?: number }
  | { cancel: number }
  | { sql: string; users: number[] };

const USERS = fixedUsers(16);
const TICKETS = Array.from(
  { length: 16 },
  (_, i) => `10000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
);

/** Every branch of the join: double tap, FIFO among compatible, flexible keys, idempotent retry before and after a
 * match, the eligibility hook, supersede, cancel, expired and stale tickets passed by a claim, widening. */
const SCENARIO: Step[] = [
  { join: 0, criteria: { lang: 'en', tz: 'eu' } },
  { join: 0, criteria: { lang: 'en', tz: 'eu' } },
  { join: 1, criteria: { lang: 'fr' } },
  { join: 2, criteria: { lang: 'en', tz: 'us' } },
  { join: 3, criteria: { lang: 'en', tz: 'any' } },
  { join: 4, criteria: { lang: 'en', tz: 'us' }, ticket: 4 },
  { join: 4, criteria: { lang: 'en', tz: 'us' }, ticket: 4 },
  { join: 5, criteria: { lang: 'fr' } },
  { join: 6 },
  { join: 7, ticket: 7 },
  { join: 7, ticket: 7 },
  { join: 8 },
  { join: 9, criteria: { lang: 'de' } },
  { join: 9, criteria: { lang: 'it' } },
  { cancel: 7 },
  { join: 7 },
  { join: 11, criteria: { lang: 'jp' } },
  {
    sql: `update matchmaker.tickets set expires_at = clock_timestamp() - interval '1 second' where user_id = $1`,
    users: [11],
  },
  { join: 10, criteria: { lang: 'jp' } },
  { join: 12, criteria: { lang: 'ko', tz: 'eu' } },
  {
    sql: `update matchmaker.tickets set enqueued_at = enqueued_at - interval '11 seconds' where user_id = $1`,
    users: [12],
  },
  { join: 13, criteria: { lang: 'ko', tz: 'us' } },
  { join: 14, criteria: { lang: 'sv' } },
  {
    sql: `update matchmaker.tickets set last_seen_at = clock_timestamp() - interval '31 seconds' where user_id = $1`,
    users: [14],
  },
  { join: 15, criteria: { lang: 'sv' } },
  { join: 9, criteria: { lang: 'it' } },
];

const who = userNamer(USERS);

function describeState(r: RpcState) {
  return {
    status: r.status,
    result: r.result,
    reason: r.reason,
    partner: who(r.match?.partner_id),
    matchCriteria: r.match?.criteria ?? null,
    criteria: r.ticket?.criteria ?? null,
    pool: r.ticket?.pool ?? null,
    ticket: r.ticket
      ? TICKETS.includes(r.ticket.id)
        ? `t${TICKETS.indexOf(r.ticket.id)}`
        : 'generated'
      : null,
    sameMatchTimes: r.match ? r.match.created_at === r.ticket?.ended_at : null,
    topic: r.topic === `matchmaker:user:${USERS[USERS.indexOf(r.topic.slice(16))] ?? ''}`,
    heartbeat: r.heartbeat_interval_ms,
  };
}

async function runScenario(db: QueueDb): Promise<unknown> {
  const s = await db.client();
  await configure(s, {
    criteria_keys: [{ key: 'lang' }, { key: 'tz', match: 'flexible', widen_after: '10 seconds' }],
  });
  await s.query(
    `create or replace function matchmaker.is_eligible(a uuid, b uuid) returns boolean language sql stable
     set search_path = '' as $$ select not ('${USERS[6]}' in (a, b) and '${USERS[7]}' in (a, b)) $$`,
  );
  const answers: unknown[] = [];
  for (const step of SCENARIO) {
    if ('join' in step) {
      const ticket = step.ticket === undefined ? undefined : TICKETS[step.ticket];
      answers.push(describeState(await join(s, USERS[step.join]!, step.criteria, ticket)));
    } else if ('cancel' in step) {
      answers.push(describeState(await cancel(s, USERS[step.cancel]!)));
    } else {
      for (const u of step.users) await s.query(step.sql, [USERS[u]]);
    }
  }
  const tickets = await s.query(`select user_id, pool, criteria from matchmaker.tickets order by user_id`);
  const history = await s.query(
    `select user_id, outcome, reason, partner_id, match_criteria, pool, criteria,
            (match_id is not null) as has_match, (ended_at >= enqueued_at) as ordered
     from matchmaker.ticket_history order by user_id, ended_at`,
  );
  const matches = await s.query(
    `select user_a, user_b, pool, criteria, created_at = (select max(h.ended_at) from matchmaker.ticket_history as h
       where h.match_id = m.id) as same_time,
       (select count(*) from matchmaker.ticket_history as h where h.match_id = m.id)::int as history_rows
     from matchmaker.matches as m order by user_a, user_b`,
  );
  const notifications = await s.query(
    `select topic, event, payload->>'type' as type, payload->>'outcome' as outcome, payload->>'reason' as reason,
            payload->'match'->>'partner_id' as partner, payload->'match'->'criteria' as criteria,
            (payload->>'ticket_id') in (select ticket_id::text from matchmaker.ticket_history) as known_ticket
     from realtime.messages order by topic, event, payload->>'type', payload->>'outcome'`,
  );
  const heads = await s.query(
    `select count(*)::int as open_below_head from matchmaker.tickets as t
     where t.seq < (select h.head_seq from matchmaker.pool_heads as h where h.pool = t.pool order by h.id desc limit 1)`,
  );
  return {
    answers,
    tickets: tickets.rows.map((r) => ({ ...r, user_id: who(r.user_id) })),
    history: history.rows.map((r) => ({ ...r, user_id: who(r.user_id), partner_id: who(r.partner_id) })),
    matches: matches.rows.map((r) => ({ ...r, user_a: who(r.user_a), user_b: who(r.user_b) })),
    notifications: notifications.rows.map((r) => ({
      ...r,
      topic: who(String(r.topic).slice('matchmaker:user:'.length)),
      partner: who(r.partner),
    })),
    openBelowHead: heads.rows[0].open_below_head,
  };
}

describe('fast join', () => {
  it('answers, writes and notifies exactly like the join of 20261128000100 over every branch', async () => {
    const [before, after] = [await runScenario(dbs.before), await runScenario(dbs.current)];
    expect(after).toEqual(before);
    // The scenario really visits the branches (a sanity check on the scenario itself).
    const answers = (after as { answers: { status: string; result: string; reason: string | null }[] })
      .answers;
    expect(
      answers.filter((a) => a.status === 'matched' && a.result === 'created').length,
    ).toBeGreaterThanOrEqual(5);
    expect(answers.filter((a) => a.result === 'existing').length).toBeGreaterThanOrEqual(3);
    const history = (after as { history: { outcome: string }[] }).history.map((h) => h.outcome);
    expect(new Set(history)).toEqual(
      new Set(['matched', 'superseded', 'cancelled', 'expired', 'disconnected']),
    );
    expect((after as { openBelowHead: number }).openBelowHead).toBe(0);
  });

  it('a join that finds a partner never writes its own ticket to the hot table', async () => {
    const s = await dbs.current.client();
    await s.query(
      'truncate matchmaker.tickets, matchmaker.ticket_history, matchmaker.matches, realtime.messages',
    );
    await configure(s, { criteria_keys: [] });
    const [a, b] = [newUser(), newUser()];
    await join(s, a);
    // Counters of this backend, pending ones included: compare inside one transaction.
    const counts = async () =>
      (
        await s.query(
          `select pg_stat_get_xact_tuples_inserted(c.oid)::int as ins, pg_stat_get_xact_tuples_deleted(c.oid)::int as del
           from pg_class as c where c.oid = 'matchmaker.tickets'::regclass`,
        )
      ).rows[0] as { ins: number; del: number };
    await s.query('begin');
    const before = await counts();
    await s.query('set local role authenticated');
    await s.query(`select set_config('request.jwt.claims', $1, true)`, [
      JSON.stringify({ sub: b, role: 'authenticated' }),
    ]);
    const r = await s.query('select public.matchmaker_join() as r');
    await s.query('reset role');
    const after = await counts();
    await s.query('commit');
    expect((r.rows[0].r as RpcState).status).toBe('matched');
    expect({ ins: after.ins - before.ins, del: after.del - before.del }).toEqual({ ins: 0, del: 1 });
  });
});

describe('notifications in one insert', () => {
  it('a failing insert into realtime.messages falls back to realtime.send per message and never aborts the match', async () => {
    const s = await dbs.current.client();
    await s.query(
      'truncate matchmaker.tickets, matchmaker.ticket_history, matchmaker.matches, realtime.messages',
    );
    await configure(s, { criteria_keys: [] });
    const [a, b] = [newUser(), newUser()];
    // Realtime refuses messages for a's topic (think: a policy or a trigger of the host): the batch insert fails.
    await s.query(
      `alter table realtime.messages add constraint sm_refuse_a check (topic <> 'matchmaker:user:${a}') not valid`,
    );
    try {
      await join(s, a);
      const matched = await join(s, b);
      expect(matched.status).toBe('matched');
      expect(matched.match!.partner_id).toBe(a);
      const topics = await s.query(`select topic, event from realtime.messages order by topic`);
      expect(topics.rows).toEqual([{ topic: `matchmaker:user:${b}`, event: 'matched' }]);
      expect((await s.query('select count(*)::int as n from matchmaker.matches')).rows[0].n).toBe(1);
    } finally {
      await s.query('alter table realtime.messages drop constraint sm_refuse_a');
    }
  });

  it('the processor notifies every user of a chunk in one insert, with the payloads realtime.send would carry', async () => {
    const s = await dbs.current.client();
    await s.query(
      'truncate matchmaker.tickets, matchmaker.ticket_history, matchmaker.matches, realtime.messages',
    );
    await configure(s, { criteria_keys: [] });
    await insertWaiting(s, Array.from({ length: 200 }, newUser), {});
    await s.query('call matchmaker.run_maintenance()');
    const r = await s.query(
      `select count(*)::int as messages, count(distinct m.topic)::int as topics,
              count(*) filter (where m.private and m.extension = 'broadcast' and m.event = 'matched'
                and m.payload->>'type' = 'matched' and (m.payload->>'user_id')::uuid = h.user_id
                and (m.payload->'match'->>'id')::uuid = h.match_id
                and (m.payload->'match'->>'partner_id')::uuid = h.partner_id)::int as exact
       from realtime.messages as m
       join matchmaker.ticket_history as h on h.ticket_id = (m.payload->>'ticket_id')::uuid`,
    );
    expect(r.rows[0]).toEqual({ messages: 200, topics: 200, exact: 200 });
  });
});
