/**
 * Migration 20261128000800 (a join in fewer statements): what it changed answers exactly as before.
 * - the "criteria already normal" test (matchmaker._criteria_is_normal, one jsonpath expression) gives every join the pool and criteria the general normalisation
 *   gives (errors included), for every key set and input, including the ones near its edges;
 * - the pool head is logged after about one claim in four, and stays a lower bound of the pool's open tickets;
 * - the default eligibility hook is PL/pgSQL on a fresh database, and a host's own hook survives the migration.
 * The answers, rows and notifications of every join branch against 20261128000100 are compared in
 * QueueSql.fasterJoin.test.ts (it runs on all migrations, so on this one too), with the notification fallback.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyMigrations } from '../../src/migrations/applyMigrations';
import { MIGRATIONS } from '../../src/migrations/migrations.generated';
import { CRITERIA_INPUTS, CRITERIA_KEY_SETS } from './criteriaCases';
import { configure, createQueueDb, join, newUser, type QueueDb, type Session } from './queueDb';

const FEWER_STATEMENTS_VERSION = '20261128000800';

let current: QueueDb;

beforeAll(async () => {
  current = await createQueueDb();
});
afterAll(async () => {
  await current?.drop();
});

async function outcome(s: Session, sql: string, params: unknown[]): Promise<unknown> {
  await s.query('begin');
  try {
    return (await s.query(sql, params)).rows[0];
  } catch (error) {
    const e = error as { code?: string; message?: string };
    return `${e.code}: ${e.message}`;
  } finally {
    await s.query('rollback');
  }
}

describe('criteria already normal (one jsonpath expression)', () => {
  it('gives every join the pool and criteria of the general normalisation, errors included', async () => {
    const s = await current.client();
    let compared = 0;
    for (const keys of CRITERIA_KEY_SETS) {
      await configure(s, { criteria_keys: keys });
      for (const input of CRITERIA_INPUTS) {
        const general = await outcome(
          s,
          'select n.pool, n.criteria from matchmaker._normalize_criteria_general($1::jsonb, $2::jsonb) as n',
          [input, JSON.stringify(keys)],
        );
        const joined = await outcome(
          s,
          `select r -> 'ticket' ->> 'pool' as pool, r -> 'ticket' -> 'criteria' as criteria
           from matchmaker._join(gen_random_uuid(), $1::jsonb, null) as r`,
          [input],
        );
        // A join with no keys declared and no criteria takes its own shortcut to the '{}' pool.
        const expected =
          keys.length === 0 && (input === '{}' || input === 'null') ? { pool: '{}', criteria: {} } : general;
        expect(joined, `${JSON.stringify(keys)} ${input}`).toEqual(expected);
        compared += 1;
      }
    }
    expect(compared).toBe(CRITERIA_KEY_SETS.length * CRITERIA_INPUTS.length);
  });
});

describe('pool head log', () => {
  it('is written after about one claim in four and stays a lower bound of the open tickets', async () => {
    const s = await current.client();
    await s.query(
      'truncate matchmaker.tickets, matchmaker.ticket_history, matchmaker.matches, matchmaker.pool_heads',
    );
    await configure(s, { criteria_keys: [{ key: 'room' }] });
    const pairs = 80;
    const heads = async () =>
      Number((await s.query('select count(*) as n from matchmaker.pool_heads')).rows[0].n);
    const headsBefore = await heads();
    for (let i = 0; i < pairs; i += 1) {
      // Three waiting, then one claim: the claim takes the oldest, at the head of the pool.
      await join(s, newUser(), { room: 'h' });
      if (i % 2 === 1) {
        await join(s, newUser(), { room: 'h' });
        await join(s, newUser(), { room: 'h' });
      }
      const bound = await s.query(
        `select coalesce((select h.head_seq from matchmaker.pool_heads as h where h.pool = '{"room": "h"}'
                          order by h.id desc limit 1), 0) as hint,
                (select min(t.seq) from matchmaker.tickets as t where t.pool = '{"room": "h"}') as oldest`,
      );
      const { hint, oldest } = bound.rows[0] as { hint: string; oldest: string | null };
      if (oldest !== null) expect(BigInt(hint) <= BigInt(oldest), `after step ${i}`).toBe(true);
    }
    const matches = Number((await s.query('select count(*) as n from matchmaker.matches')).rows[0].n);
    const written = (await heads()) - headsBefore;
    expect(matches).toBeGreaterThan(pairs / 2);
    // One head per claim before; now the claims at the head log it when the claimed seq is a multiple of 4.
    expect(written).toBeGreaterThan(0);
    expect(written).toBeLessThan(matches / 2);
    // Nobody was stranded: every open ticket of the pool is one user (pairs pair off as they come).
    const open = Number(
      (await s.query(`select count(*) as n from matchmaker.tickets where pool = '{"room": "h"}'`)).rows[0].n,
    );
    expect(open).toBeLessThanOrEqual(1);
  });
});

describe('default eligibility hook', () => {
  const hookOf = async (s: Session) =>
    (
      await s.query(
        `select l.lanname as language, btrim(p.prosrc) as body from pg_proc as p join pg_language as l on l.oid = p.prolang
         where p.oid = 'matchmaker.is_eligible(uuid, uuid)'::regprocedure`,
      )
    ).rows[0] as { language: string; body: string };

  it('is PL/pgSQL on a fresh database and still accepts every pair', async () => {
    const s = await current.client();
    expect((await hookOf(s)).language).toBe('plpgsql');
    const r = await s.query('select matchmaker.is_eligible(gen_random_uuid(), gen_random_uuid()) as ok');
    expect(r.rows[0].ok).toBe(true);
  });

  it("never overwrites a host's own hook", async () => {
    const db = await createQueueDb({ migrate: false });
    try {
      const s = await db.client();
      await applyMigrations(s, {
        migrations: MIGRATIONS.filter((m) => m.version < FEWER_STATEMENTS_VERSION),
      });
      await s.query(`create or replace function matchmaker.is_eligible(a uuid, b uuid) returns boolean
        language sql stable set search_path = '' as $$ select a <> b $$`);
      await applyMigrations(s);
      expect(await hookOf(s)).toEqual({ language: 'sql', body: 'select a <> b' });
      const applied = await s.query('select version from matchmaker.schema_migrations where version = $1', [
        FEWER_STATEMENTS_VERSION,
      ]);
      expect(applied.rows).toHaveLength(1);
    } finally {
      await db.drop();
    }
  });
});
