/**
 * Load generators of the queue benchmark: RPC calls made the way PostgREST makes them (one transaction:
 * `set_config('role')`, `set_config('request.jwt.claims')`, the function, `commit`, each a round trip), the
 * design's join flow (insert a waiting row, then run its processor), closed loops and fixed-rate loops over a set
 * of sessions.
 *
 * @packageDocumentation
 */
import type pg from 'pg';
import type { LatencyHistogram } from './histogram';

/**
 * Run `sql` as an authenticated user, PostgREST style: `begin` with `set_config('role', 'authenticated')` and the
 * user's claims, the call, `commit` (three round trips). Rolls back and rethrows on error. `asyncCommit` also sets
 * `synchronous_commit = off` for the transaction (only to measure an upper bound: a crash could then lose a commit
 * whose answer was already returned).
 */
export async function callAsUser<T extends pg.QueryResultRow>(
  session: pg.Client,
  userId: string,
  sql: string,
  params: readonly unknown[] = [],
  asyncCommit = false,
): Promise<T | undefined> {
  const claims = session.escapeLiteral(
    JSON.stringify({ sub: userId, role: 'authenticated', aud: 'authenticated' }),
  );
  const relaxed = asyncCommit ? `, pg_catalog.set_config('synchronous_commit', 'off', true)` : '';
  await session.query(
    `begin isolation level read committed, read write;
     select pg_catalog.set_config('role', 'authenticated', true), pg_catalog.set_config('request.jwt.claims', ${claims}, true)${relaxed}`,
  );
  try {
    const { rows } = await session.query<T>(sql, [...params]);
    await session.query('commit');
    return rows[0];
  } catch (error) {
    await session.query('rollback').catch(() => {});
    throw error;
  }
}

/** `matchmaker_join(criteria)` as `userId` (see {@link callAsUser} for `asyncCommit`); true when it found a partner. */
export async function queueJoin(
  session: pg.Client,
  userId: string,
  criteria: Readonly<Record<string, string>>,
  asyncCommit = false,
): Promise<boolean> {
  const row = await callAsUser<{ status: string }>(
    session,
    userId,
    'select public.matchmaker_join(criteria => $1::jsonb) ->> $2 as status',
    [JSON.stringify(criteria), 'status'],
    asyncCommit,
  );
  if (row?.status !== 'matched' && row?.status !== 'waiting') {
    throw new Error(`matchmaker_join answered ${String(row?.status)}`);
  }
  return row.status === 'matched';
}

/** `matchmaker_state()` as `userId` (the reconcile / poll call). */
export async function queueState(session: pg.Client, userId: string): Promise<string> {
  const row = await callAsUser<{ status: string }>(
    session,
    userId,
    'select public.matchmaker_state() ->> $1 as status',
    ['status'],
  );
  return row?.status ?? 'none';
}

/**
 * The design's join (its Edge Function): insert a waiting row, then call `process_matchmaking_queue()`; two
 * autocommit statements, no PostgREST wrapper (which favours the baseline). True when the call made a pair.
 */
export async function seedJoin(session: pg.Client, userId: string): Promise<boolean> {
  await session.query('insert into matchmaking_queue (user_id) values ($1)', [userId]);
  const { rows } = await session.query<{ n: number }>('select process_matchmaking_queue() as n');
  return (rows[0]?.n ?? 0) > 0;
}

/** One operation of a load loop: resolves true when it "matched" (what that means is up to the caller). */
export type LoadOperation = (session: pg.Client, sessionIndex: number) => Promise<boolean>;

/** Result of {@link runClosedLoop} and {@link runFixedRate}. */
export interface LoadResult {
  /** Operations completed (errors excluded). */
  readonly ops: number;
  /** Completed operations per second of the run. */
  readonly opsPerSec: number;
  /** Operations that resolved true. */
  readonly matched: number;
  /** Operations that threw (e.g. the design's deadlocks). */
  readonly errors: number;
  readonly seconds: number;
  /** First error message, if any. */
  readonly firstError?: string;
}

/** Counts of one load run, shared by {@link runClosedLoop} and {@link runFixedRate}. */
class LoadTally {
  readonly started = performance.now();
  ops = 0;
  matched = 0;
  errors = 0;
  firstError: string | undefined;

  /** Runs `op` once and counts how it went (an error is counted, not thrown). */
  async run(op: () => Promise<boolean>): Promise<'matched' | 'done' | 'failed'> {
    try {
      const hit = await op();
      this.ops += 1;
      if (hit) this.matched += 1;
      return hit ? 'matched' : 'done';
    } catch (error) {
      this.errors += 1;
      this.firstError ??= error instanceof Error ? error.message : String(error);
      return 'failed';
    }
  }

  result(): LoadResult {
    const seconds = (performance.now() - this.started) / 1_000;
    const { ops, matched, errors, firstError } = this;
    return {
      ops,
      opsPerSec: ops / seconds,
      matched,
      errors,
      seconds,
      ...(firstError === undefined ? {} : { firstError }),
    };
  }
}

/**
 * Every session runs `op` back to back until `seconds` have passed. With `latency`, the duration of each
 * operation is recorded there; with `onlyMatched`, only those that resolved true.
 */
export async function runClosedLoop(
  sessions: readonly pg.Client[],
  seconds: number,
  op: LoadOperation,
  latency?: { readonly histogram: LatencyHistogram; readonly onlyMatched?: boolean },
): Promise<LoadResult> {
  const tally = new LoadTally();
  const deadline = tally.started + seconds * 1_000;
  await Promise.all(
    sessions.map(async (session, index) => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        const outcome = await tally.run(() => op(session, index));
        if (latency && (outcome === 'matched' || (outcome === 'done' && !latency.onlyMatched))) {
          latency.histogram.recordMs(performance.now() - t0);
        }
      }
    }),
  );
  return tally.result();
}

/**
 * Operations scheduled at a fixed `rate` per second for `seconds`, handed to whichever session is free; each
 * latency goes into `histogram`, measured from the scheduled time when the operation had to wait for a session
 * (no coordinated omission), else from its start.
 */
export async function runFixedRate(
  sessions: readonly pg.Client[],
  rate: number,
  seconds: number,
  op: LoadOperation,
  histogram: LatencyHistogram,
): Promise<LoadResult & { readonly late: number }> {
  const total = Math.max(1, Math.round(rate * seconds));
  const interval = 1_000 / rate;
  let next = 0;
  let late = 0;
  const tally = new LoadTally();
  const started = tally.started;
  await Promise.all(
    sessions.map(async (session, index) => {
      for (;;) {
        const slot = next;
        if (slot >= total) return;
        next += 1;
        const scheduled = started + slot * interval;
        const wait = scheduled - performance.now();
        // A slot already due waited for a free session: that queueing counts. A slot in the future is slept
        // for, and the timer's own lateness does not count.
        let from = scheduled;
        if (wait > 0) {
          await new Promise((resolve) => setTimeout(resolve, wait));
          from = performance.now();
        } else if (wait < -interval) {
          late += 1;
        }
        if ((await tally.run(() => op(session, index))) !== 'failed')
          histogram.recordMs(performance.now() - from);
      }
    }),
  );
  return { ...tally.result(), late };
}
