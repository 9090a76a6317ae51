/**
 * Migration 20261128001000 (a join with fewer statements around its work): what it reordered and merged answers as
 * before it, and the locks it now takes in expressions are really taken.
 * - a user with an open ticket, or a retried ticket id, still goes to the general join, whose answers and errors are
 *   those of the database before the migration (criteria are now normalised after the user lock);
 * - a missing settings row fails the join with the same error;
 * - while a join's transaction is open, it holds the user lock and the pool lock (taken in assignments now).
 * Every branch of the join against 20261128000100 is compared in QueueSql.fasterJoin.test.ts (all migrations).
 */
import { describe, expect, it } from 'vitest';
import {
  backendPid,
  configure,
  databasesAround,
  fixedUsers,
  join,
  newUser,
  openRpc,
  type Session,
} from './queueDb';

const JOIN_STATEMENTS_VERSION = '20261128001000';

const dbs = databasesAround(JOIN_STATEMENTS_VERSION);

/** The answer of a join, or its error as `code: message`, with ids and times replaced by their kind. */
async function answer(s: Session, uid: string, criteria?: Record<string, unknown>, ticketId?: string) {
  try {
    const r = await join(s, uid, criteria, ticketId);
    return JSON.parse(
      JSON.stringify(r)
        .replace(/\d{4}-\d\d-\d\dT[0-9:.]+(\+00:00|Z)/g, '<time>')
        .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, (id) =>
          id === uid ? '<self>' : id === ticketId ? '<ticket>' : '<id>',
        ),
    ) as unknown;
  } catch (error) {
    const e = error as { code?: string; message?: string };
    return `${e.code}: ${e.message}`;
  }
}

/** The same script on both databases: every answer of the current one equals the one before the migration. */
async function sameOnBoth(script: (s: Session) => Promise<unknown[]>): Promise<unknown[]> {
  const [a, b] = await Promise.all([dbs.before.client(), dbs.current.client()]);
  const [was, now] = await Promise.all([script(a), script(b)]);
  expect(now).toEqual(was);
  return now;
}

describe('the general cases, now probed in the settings statement', () => {
  it('answers a user with an open ticket, a retried ticket id and bad criteria as before', async () => {
    const [alice, bob, carol] = fixedUsers(3);
    const ticket = '20000000-0000-4000-8000-000000000001';
    const answers = await sameOnBoth(async (s) => {
      await configure(s, { criteria_keys: [{ key: 'room' }] });
      await s.query('truncate matchmaker.tickets, matchmaker.ticket_history, matchmaker.matches');
      return [
        await answer(s, alice!, { room: 'a' }), // waits
        await answer(s, alice!, { room: 'a' }), // open ticket: the general join answers "existing"
        await answer(s, alice!, { nope: 'x' }), // open ticket and bad criteria: the criteria error
        await answer(s, alice!, { room: 'b' }), // open ticket, other criteria
        await answer(s, bob!, { room: 'c' }, ticket), // waits with its own ticket id
        await answer(s, bob!, { room: 'c' }, ticket), // the same request retried
        await answer(s, carol!, { room: 'c' }), // matches bob
        await answer(s, bob!, { room: 'c' }, ticket), // retried after the match: the finished ticket
        await answer(s, carol!, { room: 7 }), // bad criteria, no open ticket
      ];
    });
    expect(answers[0]).toMatchObject({ status: 'waiting', result: 'created' });
    expect(answers[2]).toMatch(/^22023: matchmaker: invalid criteria/);
    expect(answers[6]).toMatchObject({ status: 'matched', result: 'created' });
    expect(answers[7]).toMatchObject({ status: 'matched' });
  });

  it('fails a join the same way when the settings row is missing', async () => {
    const dave = fixedUsers(4)[3];
    const answers = await sameOnBoth(async (s) => {
      await s.query('begin');
      try {
        await s.query('alter table matchmaker.settings disable trigger user');
        await s.query('delete from matchmaker.settings');
        const r = await s.query(`select matchmaker._join($1::uuid, '{}'::jsonb, null) as r`, [dave]).then(
          () => 'joined',
          (error: { code?: string; message?: string }) => `${error.code}: ${error.message}`,
        );
        return [r];
      } finally {
        await s.query('rollback');
      }
    });
    expect(answers[0]).not.toBe('joined');
  });
});

describe('locks taken in expressions', () => {
  it('holds the user lock and the pool lock until the join commits', async () => {
    const erin = newUser();
    const s = await dbs.current.client();
    const observer = await dbs.current.client();
    await configure(observer, { criteria_keys: [{ key: 'room' }] });
    const pool = '{"room": "locks"}';
    const held = async () =>
      (
        await observer.query(
          `select l.classid::int as namespace
           from pg_locks as l
           where l.locktype = 'advisory' and l.granted and l.pid = $1
             and ((l.classid::int = 1835887476 and l.objid::int = hashtext($2))
               or (l.classid::int = 1835887475 and l.objid::int = hashtext($3)))
           order by 1`,
          [await backendPid(s), erin, pool],
        )
      ).rows.map((row: { namespace: number }) => row.namespace);
    const r = await openRpc(s, erin, `select public.matchmaker_join('{"room": "locks"}'::jsonb) as r`);
    expect((r.r as { status: string }).status).toBe('waiting');
    expect(await held()).toEqual([1835887475, 1835887476]);
    await s.query('commit');
    expect(await held()).toEqual([]);
  });
});
