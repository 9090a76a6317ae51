/**
 * Migration 20261129000200 (pool pruning): a registered pool with no ticket, registered and last settled more than
 * `settings.pool_idle` ago, leaves the pool registry with its head rows; maintenance does it when a pass is due, in
 * bounded batches; its next ticket registers it again.
 * - What is pruned and what stays (a waiting ticket, a recent registration, a recent head), and that a pruned pool
 *   works again at its next join.
 * - When maintenance prunes (`matchmaker_process`, `run_maintenance`): at most one pass per least(pool_idle, 1 hour),
 *   in batches of `max_pools_per_step`, never with `pool_idle` null.
 * - Races: a join or a direct insert in flight keeps its pool registered (the prune only tries the pool's lock); an
 *   insert that starts while a prune holds the lock waits for it and registers the pool again; a repeatable read
 *   load whose snapshot predates a prune registers it again. With 20261128000600's trigger (no lock) the in-flight
 *   interleaving leaves a committed backlog outside the registry, unpaired.
 * - A direct insert while maintenance works the pool waits for the pool's lock and draws its seq under it; with
 *   20261128000600's trigger the step logs a head past the loaded tickets, which are never paired.
 */
import type pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../../src/migrations/migrations.generated';
import {
  backendPid,
  configure,
  createQueueDb,
  drain,
  insertWaiting,
  join,
  newUser,
  openRpc,
  processOnce,
  type QueueDb,
  registerEmptyPools,
  waitUntilBlocked,
} from './queueDb';

const TRUNCATE = `truncate matchmaker.tickets, matchmaker.ticket_history, matchmaker.matches, matchmaker.pool_heads,
  matchmaker.pools, realtime.messages`;

let shared: QueueDb | undefined;
async function db(): Promise<QueueDb> {
  shared ??= await createQueueDb();
  return shared;
}
afterAll(async () => {
  await shared?.drop();
});

/** Empty queue, a 'room' key, pool_idle of an hour, no prune pass done yet. */
async function reset(s: pg.Client, settings: Record<string, unknown> = {}): Promise<void> {
  await s.query(TRUNCATE);
  await configure(s, {
    criteria_keys: [{ key: 'room' }],
    pool_idle: '1 hour',
    max_pools_per_step: 64,
    ...settings,
  });
  await s.query(`update matchmaker.maintenance_state set pools_pruned_at = '-infinity', prune_cursor = null`);
}

/** The pool of the criteria `{room}`: its canonical text, as the database writes it (jsonb's own output). */
const POOL_OF_ROOM = `pg_catalog.jsonb_build_object('room', $1::text)::text`;

/** Dates a pool's registration and every head row of it `age` back. */
async function age(s: pg.Client, room: string, by = '2 hours'): Promise<void> {
  await s.query(
    `update matchmaker.pools set created_at = created_at - $2::interval where pool = ${POOL_OF_ROOM}`,
    [room, by],
  );
  await s.query(
    `update matchmaker.pool_heads set settled_at = settled_at - $2::interval where pool = ${POOL_OF_ROOM}`,
    [room, by],
  );
}

async function registered(s: pg.Client): Promise<string[]> {
  const { rows } = await s.query<{ pool: string }>('select pool from matchmaker.pools order by pool');
  return rows.map((r) => (JSON.parse(r.pool) as { room: string }).room);
}

async function headRows(s: pg.Client, room: string): Promise<number> {
  const { rows } = await s.query<{ n: number }>(
    `select count(*)::int as n from matchmaker.pool_heads where pool = ${POOL_OF_ROOM}`,
    [room],
  );
  return rows[0]!.n;
}

/** `CALL matchmaker.prune_pools()`: a whole pass now; the pools it pruned. */
async function prunePools(s: pg.Client): Promise<number> {
  const { rows } = await s.query<{ pools_pruned: number }>('call matchmaker.prune_pools()');
  return rows[0]!.pools_pruned;
}

/** Two sessions on the shared database, and an idle pool 'r' (matched in, then dated two hours back). */
async function idlePoolR(queue: QueueDb): Promise<[pg.Client, pg.Client]> {
  const [a, b] = [await queue.client(), await queue.client()];
  await reset(a);
  await matchIn(a, 'r');
  await age(a, 'r');
  return [a, b];
}

/** Two users join `room`: the second is matched with the first. */
async function matchIn(s: pg.Client, room: string): Promise<void> {
  await join(s, newUser(), { room });
  const second = await join(s, newUser(), { room });
  expect(second.status).toBe('matched');
}

describe('idle pools leave the registry', () => {
  it('prunes empty pools registered and settled before pool_idle, with their head rows; keeps pools in use', async () => {
    const s = await (await db()).client();
    await reset(s);
    // idle: matched long ago; empty: registered long ago, never settled (no head row); waiting: a ticket waits;
    // fresh: matched just now; resettled: registered long ago, but its head was settled just now.
    await matchIn(s, 'idle');
    await s.query(`insert into matchmaker.pool_heads (pool, head_seq) values (${POOL_OF_ROOM}, 0)`, ['idle']);
    await s.query(`insert into matchmaker.pools (pool) values (${POOL_OF_ROOM})`, ['empty']);
    await join(s, newUser(), { room: 'waiting' });
    await matchIn(s, 'fresh');
    await matchIn(s, 'resettled');
    for (const room of ['idle', 'empty', 'waiting', 'resettled']) await age(s, room);
    await s.query(`insert into matchmaker.pool_heads (pool, head_seq) values (${POOL_OF_ROOM}, 0)`, [
      'resettled',
    ]);
    expect(await headRows(s, 'idle')).toBeGreaterThan(0);

    expect(await prunePools(s)).toBe(2);
    expect(await registered(s)).toEqual(['fresh', 'resettled', 'waiting']);
    expect(await headRows(s, 'idle')).toBe(0);

    // The pruned pool works again: its next waiting ticket registers it, and the next join pairs with it.
    const first = newUser();
    expect((await join(s, first, { room: 'idle' })).status).toBe('waiting');
    expect(await registered(s)).toContain('idle');
    const second = await join(s, newUser(), { room: 'idle' });
    expect(second.status).toBe('matched');
    expect(second.match?.partner_id).toBe(first);
  });

  it('never prunes with pool_idle null, and refuses to run in a repeatable read transaction', async () => {
    const s = await (await db()).client();
    await reset(s, { pool_idle: null });
    await s.query(
      `insert into matchmaker.pools (pool, created_at) values (${POOL_OF_ROOM}, now() - interval '10 years')`,
      ['old'],
    );
    expect(await prunePools(s)).toBe(0);
    expect((await processOnce(s)).pools_pruned).toBe(0);
    expect(await registered(s)).toEqual(['old']);

    await configure(s, { pool_idle: '1 hour' });
    await s.query('begin isolation level repeatable read');
    await expect(s.query('select matchmaker._prune_pools(true)')).rejects.toMatchObject({ code: '25001' });
    await s.query('rollback');
    // The whole-pass procedure commits after each batch: not inside a transaction block.
    await s.query('begin');
    await expect(s.query('call matchmaker.prune_pools()')).rejects.toMatchObject({ code: '2D000' });
    await s.query('rollback');
    await expect(s.query(`update matchmaker.settings set pool_idle = interval '0'`)).rejects.toMatchObject({
      code: '23514',
    });
  });
});

describe('maintenance prunes when a pass is due', () => {
  it('matchmaker_process: one pass per least(pool_idle, 1 hour), in batches of max_pools_per_step', async () => {
    const s = await (await db()).client();
    await reset(s, { pool_idle: '1 day', max_pools_per_step: 64 });
    await registerEmptyPools(s, 150, 'p', '2 days');
    const first = await processOnce(s);
    expect(first).toMatchObject({ pools_pruned: 64, more: true });
    const rest = await drain(s);
    expect(rest.reduce((sum, r) => sum + (r.pools_pruned ?? 0), 0)).toBe(86);
    expect(await registered(s)).toEqual([]);
    const after = await s.query('select prune_cursor, pools_pruned_at from matchmaker.maintenance_state');
    expect(after.rows[0].prune_cursor).toBeNull();

    // Not due again for an hour (least(1 day, 1 hour)): a pool that went idle meanwhile waits for the next pass.
    await registerEmptyPools(s, 1, 'later', '2 days');
    expect((await processOnce(s)).pools_pruned).toBe(0);
    await s.query(`update matchmaker.maintenance_state set pools_pruned_at = now() - interval '61 minutes'`);
    expect((await processOnce(s)).pools_pruned).toBe(1);

    // With pool_idle of 10 minutes, a pass is due every 10 minutes.
    await configure(s, { pool_idle: '10 minutes' });
    await registerEmptyPools(s, 1, 'sooner', '1 hour');
    await s.query(`update matchmaker.maintenance_state set pools_pruned_at = now() - interval '11 minutes'`);
    expect((await processOnce(s)).pools_pruned).toBe(1);
  });

  it('a whole pass holds at most max_pools_per_step pool locks at a time (20,000 idle pools in one CALL)', async () => {
    // Held to the end of one transaction, 20,000 advisory locks would exhaust the lock table (default
    // max_locks_per_transaction 64 x max_connections): the pass commits after each batch.
    const s = await (await db()).client();
    await reset(s, { pool_idle: '1 day', max_pools_per_step: 1000 });
    await registerEmptyPools(s, 20_000, 'w', '2 days');
    expect(await prunePools(s)).toBe(20_000);
    expect(await registered(s)).toEqual([]);
  });

  it('run_maintenance: prunes the due pass after its steps, a committed batch at a time', async () => {
    const s = await (await db()).client();
    await reset(s, { pool_idle: '1 day', max_pools_per_step: 16 });
    await registerEmptyPools(s, 40, 'q', '2 days');
    await insertWaiting(s, [newUser(), newUser()], { room: 'busy' });
    await s.query('call matchmaker.run_maintenance()');
    expect(await registered(s)).toEqual(['busy']);
    expect((await s.query('select count(*)::int as n from matchmaker.matches')).rows[0].n).toBe(1);
    const state = await s.query(
      "select prune_cursor, pools_pruned_at > now() - interval '1 minute' as recent from matchmaker.maintenance_state",
    );
    expect(state.rows[0]).toEqual({ prune_cursor: null, recent: true });
  });
});

describe('a prune never loses a pool that has tickets', () => {
  it('a join in flight keeps its pool: the prune only tries the pool lock', async () => {
    const [a, b] = await idlePoolR(await db());
    const user = newUser();
    const answer = await openRpc(a, user, `select public.matchmaker_join($1::jsonb) as r`, [
      JSON.stringify({ room: 'r' }),
    ]);
    expect((answer.r as { status: string }).status).toBe('waiting');
    expect(await prunePools(b)).toBe(0);
    await a.query('commit');
    expect(await registered(b)).toEqual(['r']);
    expect((await join(b, newUser(), { room: 'r' })).match?.partner_id).toBe(user);
  });

  it('a direct insert in flight keeps its pool, and its backlog is paired by maintenance', async () => {
    const outcome = await directInsertDuringPrune(...(await idlePoolR(await db())));
    expect(outcome).toEqual({ prunedDuringInsert: 0, registered: ['r'], pairs: 3 });
  });

  it('an insert that starts while a prune holds the pool waits for it, then registers the pool again', async () => {
    const [a, b] = await idlePoolR(await db());
    await b.query('begin');
    const pruning = await b.query<{ r: { pools_pruned: number } }>(
      'select matchmaker._prune_pools(true) as r',
    );
    expect(pruning.rows[0]!.r.pools_pruned).toBe(1);
    const pidA = await backendPid(a);
    const loading = (async () => {
      await a.query('begin');
      await insertWaiting(
        a,
        Array.from({ length: 6 }, () => newUser()),
        { room: 'r' },
      );
      await a.query('commit');
    })();
    expect(await waitUntilBlocked(b, pidA, ['advisory'])).toBe('advisory');
    await b.query('commit');
    await loading;
    expect(await registered(b)).toEqual(['r']);
    const steps = await drain(b);
    expect(steps.reduce((sum, r) => sum + r.pairs, 0)).toBe(3);
  });

  it('a repeatable read bulk load whose snapshot predates a prune registers the pool again', async () => {
    const [a, b] = await idlePoolR(await db());
    await a.query('begin isolation level repeatable read');
    await a.query('select count(*) from matchmaker.pools'); // the snapshot: 'r' registered
    expect(await prunePools(b)).toBe(1);
    await insertWaiting(
      a,
      Array.from({ length: 4 }, () => newUser()),
      { room: 'r' },
    );
    await a.query('commit');
    expect(await registered(b)).toEqual(['r']);
    const steps = await drain(b);
    expect(steps.reduce((sum, r) => sum + r.pairs, 0)).toBe(2);
  });

  it("with 20261128000600's trigger (no lock) the same interleaving strands the backlog", async () => {
    // The regression this migration's trigger change prevents, shown on a database of its own.
    const other = await createQueueDb();
    try {
      const [a, b] = await idlePoolR(other);
      await restoreTriggerOf000600(a);
      const outcome = await directInsertDuringPrune(a, b);
      expect(outcome).toEqual({ prunedDuringInsert: 1, registered: [], pairs: 0 });
    } finally {
      await other.drop();
    }
  });
});

describe('a direct insert while maintenance works its pool', () => {
  /**
   * Two waiting tickets committed in pool 'r'; `loader` inserts two more directly and keeps its transaction open;
   * `worker` runs one maintenance step (it pairs what it sees and logs the pool's head); then `loader` commits.
   * Returns whether the step had to wait for the loader, and the pairs made in all once maintenance is done.
   */
  async function loadDuringStep(
    queue: QueueDb,
    prepare?: (s: pg.Client) => Promise<unknown>,
  ): Promise<{ stepWaited: boolean; pairs: number; waiting: number }> {
    const [loader, worker, observer] = [await queue.client(), await queue.client(), await queue.client()];
    await reset(loader);
    await prepare?.(loader);
    await insertWaiting(loader, [newUser(), newUser()], { room: 'r' });
    await loader.query('begin');
    await insertWaiting(loader, [newUser(), newUser()], { room: 'r' });
    const pidW = await backendPid(worker);
    const step = worker.query<{ r: { pairs: number } }>(
      'select matchmaker._maintenance_step(1000, null) as r',
    );
    const stepWaited = await waitUntilBlocked(observer, pidW, ['advisory'], 2_000).then(
      () => true,
      () => false,
    );
    // A step that did not wait finishes before the loader commits; one that waits, only after.
    const first = stepWaited ? undefined : (await step).rows[0]!.r.pairs;
    await loader.query('commit');
    const pairsOfStep = first ?? (await step).rows[0]!.r.pairs;
    const rest = await drain(worker);
    const { rows } = await observer.query<{ n: number }>('select count(*)::int as n from matchmaker.tickets');
    return {
      stepWaited,
      pairs: pairsOfStep + rest.reduce((sum, r) => sum + r.pairs, 0),
      waiting: rows[0]!.n,
    };
  }

  it('waits for the pool lock and draws its seq under it: every ticket is paired', async () => {
    expect(await loadDuringStep(await db())).toEqual({ stepWaited: true, pairs: 2, waiting: 0 });
  });

  it("with 20261128000600's trigger the step logs a head past the loaded tickets, which are never paired", async () => {
    const other = await createQueueDb();
    try {
      const outcome = await loadDuringStep(other, restoreTriggerOf000600);
      expect(outcome).toEqual({ stepWaited: false, pairs: 1, waiting: 2 });
    } finally {
      await other.drop();
    }
  });
});

/**
 * Puts back the registry trigger as 20261128000600 shipped it: `matchmaker._register_pool()` re-created from that
 * migration's own text, and the column default of `tickets.seq` (a `nextval` drawn before any trigger runs) that
 * 20261129000200 moved into the trigger.
 */
async function restoreTriggerOf000600(s: pg.Client): Promise<void> {
  const sql = MIGRATIONS.find((m) => m.version === '20261128000600')?.sql;
  const definition = sql?.match(/create function matchmaker\._register_pool\(\)[\s\S]*?\n\$fn\$;/)?.[0];
  if (definition === undefined) throw new Error('no matchmaker._register_pool() in migration 20261128000600');
  await s.query(definition.replace('create function', 'create or replace function'));
  await s.query(
    `alter table matchmaker.tickets alter column seq set default pg_catalog.nextval('matchmaker.ticket_seq')`,
  );
}

/**
 * After {@link idlePoolR}: session `a` inserts 6 waiting tickets into it directly (the owner's bulk load) and keeps its
 * transaction open while `b` runs a prune pass; then `a` commits and `b` drains.
 */
async function directInsertDuringPrune(
  a: pg.Client,
  b: pg.Client,
): Promise<{ prunedDuringInsert: number; registered: string[]; pairs: number }> {
  await a.query('begin');
  await insertWaiting(
    a,
    Array.from({ length: 6 }, () => newUser()),
    { room: 'r' },
  );
  const pruned = await prunePools(b);
  await a.query('commit');
  const pools = await registered(b);
  const steps = await drain(b);
  return { prunedDuringInsert: pruned, registered: pools, pairs: steps.reduce((sum, r) => sum + r.pairs, 0) };
}
