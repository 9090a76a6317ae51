/**
 * Migration 20261128001000, its JSON built from row types: every JSON value the join and the pair writer build is the
 * one jsonb_build_object built before it.
 * - the same script of joins (waiting, matched at the pool's head, past the head, with widened criteria, through
 *   the general join, with a refused notification) and batch steps gives the same answers and the same
 *   realtime.messages rows on a database before the migration and on one with it. Ids and times are compared by
 *   where they appear: each distinct one is named by its first appearance, so an id in the wrong place differs;
 * - on the migrated database, each 'matched' payload is exactly (jsonb equality, times included) the
 *   jsonb_build_object of the rows it describes, and each join answer's "match" is the user's payload "match";
 * - the row types are not usable by the API roles.
 */
import { describe, expect, it } from 'vitest';
import {
  configure,
  databasesAround,
  fixedUsers,
  insertWaiting,
  join,
  processOnce,
  type QueueDb,
  type Session,
  userNamer,
} from './queueDb';

const ROW_TYPE_JSON_VERSION = '20261128001000';
const ROW_TYPES = [
  'match_json',
  'matched_message_json',
  'open_ticket_json',
  'ended_ticket_json',
  'join_answer_json',
];

// Up to this migration only: 20261129000100 changes what a maintenance step reports ("pools": the pools that can
// pair instead of every registered pool it walked), which this file's script records.
const dbs = databasesAround(ROW_TYPE_JSON_VERSION, { currentBefore: '20261129000100' });

const USERS = fixedUsers(24);
const who = userNamer(USERS);
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;
/** A timestamptz as jsonb writes it (UTC session): microseconds without trailing zeros. */
const TIME = /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?\+00:00/g;

/**
 * `value` as JSON text with user ids named `u<i>`, and every other id and every time named by its first
 * appearance (`<id1>`, `<t1>`, ...): two databases give the same text only if the same values sit in the same places.
 */
function canonical(value: unknown): unknown {
  const ids = new Map<string, string>();
  const times = new Map<string, string>();
  const text = JSON.stringify(value)
    .replace(UUID, (id) => {
      if (USERS.includes(id)) return who(id);
      if (!ids.has(id)) ids.set(id, `<id${ids.size + 1}>`);
      return ids.get(id)!;
    })
    .replace(TIME, (time) => {
      if (!times.has(time)) times.set(time, `<t${times.size + 1}>`);
      return times.get(time)!;
    });
  return JSON.parse(text) as unknown;
}

const TRUNCATE =
  'truncate matchmaker.tickets, matchmaker.ticket_history, matchmaker.matches, matchmaker.pool_heads, realtime.messages';

/** Runs `body` while realtime.messages refuses rows for `uid`'s topic (as a project policy could). */
async function whileRefusing<T>(s: Session, uid: string, body: () => Promise<T>): Promise<T> {
  await s.query(
    `alter table realtime.messages add constraint sm_refuse check (topic <> 'matchmaker:user:${uid}') not valid`,
  );
  try {
    return await body();
  } finally {
    await s.query('alter table realtime.messages drop constraint sm_refuse');
  }
}

/** The script: each step's answer, in order. */
async function script(s: Session): Promise<unknown[]> {
  await s.query(TRUNCATE);
  await s.query("set timezone = 'UTC'");
  await configure(s, {
    criteria_keys: [{ key: 'lang' }, { key: 'tz', match: 'flexible', widen_after: '10 seconds' }],
    heartbeat_timeout: '30 seconds',
  });
  const u = (i: number) => USERS[i]!;
  const answers: unknown[] = [];
  const step = async (i: number, criteria: Record<string, unknown>) => {
    answers.push(await join(s, u(i), criteria));
  };
  // At the head: u0 waits, u1 matches u0.
  await step(0, { lang: 'en', tz: 'eu' });
  await step(1, { lang: 'en', tz: 'eu' });
  // Widened criteria: u3 ("any tz") meets u2; the match's criteria are the meet of both.
  await step(2, { lang: 'de', tz: 'us' });
  await step(3, { lang: 'de', tz: '*' });
  // Past the head: u4 (tz eu) heads the pool, u5 (tz us) waits behind it; u6 (tz us) claims u5.
  await step(4, { lang: 'fr', tz: 'eu' });
  await step(5, { lang: 'fr', tz: 'us' });
  await step(6, { lang: 'fr', tz: 'us' });
  // A stale head: u7 stops heartbeating; u8 retires it (cancelled, stale) and waits; u9 matches u8.
  await step(7, { lang: 'it', tz: 'eu' });
  await s.query(
    "update matchmaker.tickets set last_seen_at = clock_timestamp() - interval '1 minute' where user_id = $1",
    [u(7)],
  );
  await step(8, { lang: 'it', tz: 'eu' });
  await step(9, { lang: 'it', tz: 'eu' });
  // The general join: u10 waits in one pool, u11 in another; u10 changes to u11's pool and is paired there.
  await step(10, { lang: 'es', tz: 'eu' });
  await step(11, { lang: 'pt', tz: 'eu' });
  await step(10, { lang: 'pt', tz: 'eu' });
  // A refused notification: u12's topic refuses inserts, so the join pairs without them and sends through
  // realtime.send() (u13 is told, u12 is not).
  await step(12, { lang: 'nl', tz: 'eu' });
  await whileRefusing(s, u(12), () => step(13, { lang: 'nl', tz: 'eu' }));
  // The batch: six tickets of one pool written directly, paired by one processor step (shared workers' path);
  // then four more with u20's topic refusing notifications (the pair writer's fallback).
  const backlog = (from: number, to: number) =>
    insertWaiting(s, USERS.slice(from, to), { lang: 'sv', tz: 'eu' }, { pool: '{"lang":"sv"}' });
  await backlog(14, 20);
  answers.push(await processOnce(s, 1000));
  await backlog(20, 24);
  answers.push(await whileRefusing(s, u(20), () => processOnce(s, 1000)));
  return answers;
}

/** What both databases must agree on: the answers, then every message in a fixed order. */
async function outcome(db: QueueDb): Promise<{ answers: unknown[]; messages: unknown[] }> {
  const s = await db.client();
  const answers = await script(s);
  const messages = await s.query(
    `select m.topic, m.event, m.private, m.extension, m.payload, m.payload ->> 'id' = m.id::text as id_is_row_id
     from realtime.messages as m order by m.topic, m.event, m.payload ->> 'type', m.payload ->> 'reason'`,
  );
  return { answers, messages: messages.rows };
}

describe('the same JSON as jsonb_build_object built', () => {
  it('gives the same answers and messages as the database dbs.before the migration', async () => {
    const [was, now] = [await outcome(dbs.before), await outcome(dbs.current)];
    expect(canonical(now)).toEqual(canonical(was));
    const answers = now.answers as { status?: string; pairs?: number }[];
    expect(answers.map((a) => a.status ?? `pairs ${a.pairs}`)).toEqual([
      'waiting',
      'matched',
      'waiting',
      'matched',
      'waiting',
      'waiting',
      'matched',
      'waiting',
      'waiting',
      'matched',
      'waiting',
      'waiting',
      'matched',
      'waiting',
      'matched',
      'pairs 3',
      'pairs 2',
    ]);
    // Both fallbacks ran: u12 and u20 got no 'matched' message, their partners did.
    const matchedTopics = (now.messages as { topic: string; event: string }[])
      .filter((m) => m.event === 'matched')
      .map((m) => who(m.topic.replace('matchmaker:user:', '')));
    expect(matchedTopics).not.toContain('u12');
    expect(matchedTopics).not.toContain('u20');
    expect(matchedTopics).toContain('u13');
    expect(matchedTopics).toContain('u21');
    expect(matchedTopics).toHaveLength(2 * 11 - 2); // 6 matches by joins, 5 by the batch
  });

  it("builds each 'matched' payload exactly as jsonb_build_object of its rows, and answers with the same match", async () => {
    const s = await dbs.current.client();
    const answers = (await script(s)) as { status?: string; match?: unknown; ticket?: { id: string } }[];
    const check = await s.query(
      `select m.topic,
              (m.payload - 'id') = jsonb_build_object('type', 'matched', 'ticket_id', h.ticket_id, 'user_id', h.user_id,
                'match', jsonb_build_object('id', x.id, 'partner_id', h.partner_id, 'created_at', x.created_at,
                  'criteria', x.criteria)) as same,
              m.payload ? 'id' as has_id, m.payload ->> 'id' = m.id::text as id_is_row_id
       from realtime.messages as m
       join matchmaker.ticket_history as h on h.ticket_id = (m.payload ->> 'ticket_id')::uuid
       join matchmaker.matches as x on x.id = h.match_id
       where m.event = 'matched'`,
    );
    expect(check.rows).toHaveLength(20);
    for (const row of check.rows) {
      expect(row.same, row.topic).toBe(true);
      // The join's and the batch's own inserts carry the row id; realtime.send() of this stack does not add it.
      if (row.has_id) expect(row.id_is_row_id, row.topic).toBe(true);
    }
    // A matched join's answer carries the match of its own payload (when it was sent).
    for (const a of answers.filter((x) => x.status === 'matched')) {
      const sent = await s.query(
        `select payload -> 'match' as match from realtime.messages where event = 'matched' and payload ->> 'ticket_id' = $1`,
        [a.ticket!.id],
      );
      for (const row of sent.rows) expect(a.match).toEqual(row.match);
    }
  });
});

describe('the row types', () => {
  it('exist in schema matchmaker and are not usable by the API roles', async () => {
    const s = await dbs.current.client();
    const r = await s.query(
      `select t.typname,
              has_type_privilege('anon', t.oid, 'usage') or has_type_privilege('authenticated', t.oid, 'usage')
                or has_type_privilege('service_role', t.oid, 'usage') as usable
       from pg_type as t join pg_namespace as n on n.oid = t.typnamespace
       where n.nspname = 'matchmaker' and t.typname = any ($1) order by t.typname`,
      [ROW_TYPES],
    );
    expect(r.rows).toEqual([...ROW_TYPES].sort().map((typname) => ({ typname, usable: false })));
  });
});
