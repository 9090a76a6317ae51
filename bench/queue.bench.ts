/**
 * The queue tier (Postgres, `supabase/migrations`): joins/s of the per-join RPC, matches/s of the batch processor,
 * a 100K backlog drained in committed chunks, DB decision latency, join-to-both-notified latency through the local
 * stack with supabase-js, claim time as history grows and under a long-held old snapshot, all beside the design's
 * own SQL (`test/fixtures/seed-v2.sql`) and the queue tier before `20261128000400_matchmaker_queue_faster_join`,
 * interleaved A B A B. Ratios to `C_tpcb`, `C_sel` and `C_rtt` of the same run. Sizes: `bench/README.md`,
 * section "Queue tier".
 *
 * @packageDocumentation
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import type pg from 'pg';
import WebSocket from 'ws';
import { Matchmaker } from '../src/core/Matchmaker';
import { applyMigrations } from '../src/migrations/applyMigrations';
import { QueueStrategy } from '../src/strategies/queue/QueueStrategy';
import { diffCounters, startLocalSupabase } from '../src/testing/index';
import {
  createPgbenchDatabase,
  measureTpcb,
  type PgbenchDatabase,
  pgConnectionArgs,
  runCommand,
} from './lib/calibration';
import type { BenchConfig, BenchEnv } from './lib/config';
import type { LatencyHistogram } from './lib/histogram';
import { parsePgbenchOutput } from './lib/parsers';
import {
  createQueueDatabase,
  dropStaleQueueDatabases,
  insertBacklog,
  type QueueDatabase,
  type QueueSchema,
} from './lib/queueDatabases';
import {
  callAsUser,
  type LoadOperation,
  type LoadResult,
  queueJoin,
  queueState,
  runClosedLoop,
  runFixedRate,
  seedJoin,
} from './lib/queueLoad';
import { type BenchContext, defineBenchmark } from './lib/runner';
import { median } from './lib/stats';

/** Sizes of the queue benchmark, from `BENCH_QUEUE_*` (smaller under `--quick`). */
export interface QueueBenchSizes {
  /** `BENCH_QUEUE_CONNECTIONS`: sessions of the join-throughput runs. */
  readonly connections: number;
  /** `BENCH_QUEUE_JOIN_SECONDS`: length of one join-throughput run. */
  readonly joinSeconds: number;
  /** `BENCH_QUEUE_POOLS`: pools of the "many pools" runs. */
  readonly manyPools: number;
  /** `BENCH_QUEUE_DECISION_RATE` / `_SECONDS`: fixed join rate (one pool) of the decision-latency runs. */
  readonly decisionRate: number;
  readonly decisionSeconds: number;
  /** `BENCH_QUEUE_BATCH`: waiting tickets of the batch matches/s runs. */
  readonly batchBacklog: number;
  /** `BENCH_QUEUE_DRAIN`: waiting tickets of the drain runs. */
  readonly drainBacklog: number;
  /** `BENCH_QUEUE_SEED_CAP`: backlog given to the design's processor (O(n^2): capped so it finishes). */
  readonly seedDrainCap: number;
  /** `BENCH_QUEUE_NOTIFY_USERS` / `_RATE`: supabase-js users and their join rate through the local stack. */
  readonly notifyUsers: number;
  readonly notifyRate: number;
  /** `BENCH_QUEUE_CLAIM_SECONDS`: load per side in the clean and history claim phases. */
  readonly claimSeconds: number;
  /** `BENCH_QUEUE_HISTORY`: finished tickets pushed through the queue before the history claim phase. */
  readonly historyRows: number;
  /** `BENCH_QUEUE_SNAPSHOT_SECONDS`: how long the old snapshot is held (claims run meanwhile). */
  readonly snapshotSeconds: number;
  /** Claim phases alternate the two designs in slices this long. */
  readonly sliceSeconds: number;
}

function readInt(env: BenchEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw.replaceAll('_', ''));
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name}=${raw} must be a positive number`);
  return value;
}

/** Sizes from the environment (`quick`: about a minute in all). */
export function readQueueBenchSizes(env: BenchEnv, quick: boolean): QueueBenchSizes {
  const q = (full: number, small: number): number => (quick ? small : full);
  return {
    connections: readInt(env, 'BENCH_QUEUE_CONNECTIONS', 8),
    joinSeconds: readInt(env, 'BENCH_QUEUE_JOIN_SECONDS', q(3, 0.6)),
    manyPools: readInt(env, 'BENCH_QUEUE_POOLS', 1_000),
    decisionRate: readInt(env, 'BENCH_QUEUE_DECISION_RATE', 200),
    decisionSeconds: readInt(env, 'BENCH_QUEUE_DECISION_SECONDS', q(4, 1)),
    batchBacklog: readInt(env, 'BENCH_QUEUE_BATCH', q(20_000, 4_000)),
    drainBacklog: readInt(env, 'BENCH_QUEUE_DRAIN', q(100_000, 10_000)),
    seedDrainCap: readInt(env, 'BENCH_QUEUE_SEED_CAP', q(2_000, 500)),
    notifyUsers: readInt(env, 'BENCH_QUEUE_NOTIFY_USERS', q(200, 40)),
    notifyRate: readInt(env, 'BENCH_QUEUE_NOTIFY_RATE', 20),
    claimSeconds: readInt(env, 'BENCH_QUEUE_CLAIM_SECONDS', q(5, 1)),
    historyRows: readInt(env, 'BENCH_QUEUE_HISTORY', q(200_000, 20_000)),
    snapshotSeconds: readInt(env, 'BENCH_QUEUE_SNAPSHOT_SECONDS', q(60, 6)),
    sliceSeconds: q(1, 0.5),
  };
}

const fmt = (value: number, digits = 0): string =>
  value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

async function sessions(db: QueueDatabase, count: number): Promise<pg.Client[]> {
  return Promise.all(Array.from({ length: count }, () => db.connect()));
}

/** Batch workers of the recommended setup (two cores here: one session per core). */
const BATCH_WORKERS = 2;

const TRUNCATE_QUEUE = `truncate matchmaker.tickets, matchmaker.ticket_history, matchmaker.matches,
  matchmaker.pool_heads, realtime.messages`;

/** Sessions that run `call matchmaker.run_maintenance()` (opened once per database, reused by every drain). */
const workerSessions = new WeakMap<QueueDatabase, pg.Client[]>();

async function workersOf(db: QueueDatabase, workers: number): Promise<pg.Client[]> {
  const sessions = workerSessions.get(db) ?? [db.admin];
  while (sessions.length < workers) sessions.push(await db.connect());
  workerSessions.set(db, sessions);
  return sessions.slice(0, workers);
}

/**
 * `call matchmaker.run_maintenance()` on a backlog, from `workers` sessions at once (the time until the last one
 * returns); chunks are the distinct match times (one per step).
 */
async function drainOnce(
  db: QueueDatabase,
  backlog: number,
  workers = 1,
): Promise<{ seconds: number; matches: number; chunks: number; longestChunkMs: number }> {
  const sessions = await workersOf(db, workers);
  await db.admin.query(TRUNCATE_QUEUE);
  await insertBacklog(db.admin, backlog, { room: 'backlog' });
  const t0 = performance.now();
  await Promise.all(sessions.map((session) => session.query('call matchmaker.run_maintenance()')));
  const seconds = (performance.now() - t0) / 1_000;
  const { rows } = await db.admin.query<{ matches: number; chunks: number; longest: number | null }>(
    `select (select count(*) from matchmaker.matches)::int as matches,
            (select count(distinct created_at) from matchmaker.matches)::int as chunks,
            (select extract(epoch from max(d)) * 1000 from (
               select t - lag(t) over (order by t) as d from (select distinct created_at as t from matchmaker.matches) as x
             ) as y)::float8 as longest`,
  );
  const row = rows[0];
  return {
    seconds,
    matches: row?.matches ?? 0,
    chunks: row?.chunks ?? 0,
    longestChunkMs: row?.longest ?? seconds * 1_000,
  };
}

/** Profiles for the design's SQL (its queue rows reference them); ids are handed out round-robin. */
async function seedProfiles(db: QueueDatabase, count: number): Promise<() => string> {
  const { rows } = await db.admin.query<{ id: string }>(
    `insert into profiles (id, looking_for_buddy) select gen_random_uuid(), true from generate_series(1, $1)
     returning id`,
    [count],
  );
  const ids = rows.map((row) => row.id);
  let next = 0;
  return () => {
    const id = ids[next % ids.length];
    next += 1;
    if (id === undefined) throw new Error('no seed profiles');
    return id;
  };
}

interface Variant {
  readonly key: string;
  readonly label: string;
  readonly run: () => Promise<LoadResult>;
}

/** Medians (and the range of the rounds) of one variant of {@link roundRobin}. */
interface RoundRobinResult {
  readonly rate: number;
  /** Each round's rate, in round order (to pair variants measured side by side). */
  readonly rounds: readonly number[];
  readonly min: number;
  readonly max: number;
  readonly matchedShare: number;
  readonly errors: number;
  readonly firstError?: string;
}

/** Run every variant once per round, in the same order each round (A B C D A B C D ...). */
async function roundRobin(
  variants: readonly Variant[],
  rounds: number,
): Promise<Map<string, RoundRobinResult>> {
  const samples = new Map<string, LoadResult[]>(variants.map((v) => [v.key, []]));
  for (let round = 0; round < rounds; round += 1) {
    for (const variant of variants) samples.get(variant.key)?.push(await variant.run());
  }
  const result = new Map<string, RoundRobinResult>();
  for (const [key, list] of samples) {
    const firstError = list.find((r) => r.firstError !== undefined)?.firstError;
    result.set(key, {
      rate: median(list.map((r) => r.opsPerSec)),
      rounds: list.map((r) => r.opsPerSec),
      min: Math.min(...list.map((r) => r.opsPerSec)),
      max: Math.max(...list.map((r) => r.opsPerSec)),
      matchedShare: median(list.map((r) => (r.ops > 0 ? r.matched / r.ops : 0))),
      errors: list.reduce((sum, r) => sum + r.errors, 0),
      ...(firstError === undefined ? {} : { firstError }),
    });
  }
  return result;
}

// -----------------------------------------------------------------------------------------------------------------
// 1. Joins/s (per-join path), DB decision latency, state polls

/** pgbench's `-T` takes whole seconds: a round's length as pgbench runs it. */
const pgbenchSeconds = (seconds: number): number => Math.max(1, Math.round(seconds));

/**
 * The PostgREST-shaped join transaction driven by pgbench (the client `C_tpcb` is measured with): `begin`,
 * `set_config('role', 'authenticated')` + `set_config('request.jwt.claims', …)` for a new random user, `select
 * public.matchmaker_join({"room": "r<random pool>"})`, `commit`; `connections` clients, 2 threads, synchronous
 * commit on. So its ratio to `C_tpcb` compares the server work of a join with a TPC-B transaction's, without the
 * node harness's client cost. The joins that matched are counted in the database (one per match made).
 */
async function runPgbenchJoins(
  config: BenchConfig,
  db: QueueDatabase,
  pools: number,
  seconds: number,
  connections: number,
): Promise<LoadResult> {
  const dir = await mkdtemp(joinPath(tmpdir(), 'bench-queue-pgbench-'));
  try {
    const script = joinPath(dir, 'join.sql');
    await writeFile(
      script,
      [
        `\\set room random(0, ${pools - 1})`,
        'begin;',
        "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', json_build_object('sub', gen_random_uuid(), 'role', 'authenticated')::text, true);",
        "select public.matchmaker_join(jsonb_build_object('room', 'r' || :room));",
        'commit;',
        '',
      ].join('\n'),
    );
    const count = async () =>
      Number(
        (await db.admin.query<{ n: string }>('select count(*) as n from matchmaker.matches')).rows[0]?.n ?? 0,
      );
    const before = await count();
    const whole = pgbenchSeconds(seconds);
    const { stdout, stderr } = await runCommand(
      'pgbench',
      [
        ...pgConnectionArgs(config),
        '-n',
        '-c',
        String(connections),
        '-j',
        '2',
        '-T',
        String(whole),
        '-f',
        script,
        db.name,
      ],
      { env: { PGOPTIONS: '-c synchronous_commit=on' }, timeoutMs: (whole + 120) * 1_000 },
    );
    const report = parsePgbenchOutput(`${stdout}\n${stderr}`);
    // Each match is made by one join (the other side was waiting): joins that matched = matches made.
    const matched = (await count()) - before;
    return {
      ops: report.transactions,
      opsPerSec: report.tps,
      matched,
      errors: report.failed,
      seconds: whole,
      ...(report.failed > 0 ? { firstError: `${report.failed} pgbench transactions failed` } : {}),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * pgbench's TPC-B transaction exactly as `C_tpcb` runs it ({@link measureTpcb}), for `seconds` (rounded to whole
 * seconds): a round of its own among the join variants, and after each batch round, so the ratios to TPC-B can be
 * taken round by round, each pair measured seconds apart, where `C_tpcb` is measured once before the benchmark.
 */
async function runPgbenchTpcb(
  config: BenchConfig,
  database: PgbenchDatabase,
  seconds: number,
): Promise<LoadResult> {
  const r = await measureTpcb(config, { database, seconds: pgbenchSeconds(seconds) });
  return {
    ops: r.transactions,
    opsPerSec: r.tps,
    matched: 0,
    errors: r.failed,
    seconds: r.seconds,
    ...(r.failed > 0 ? { firstError: `${r.failed} pgbench transactions failed` } : {}),
  };
}

async function measureJoins(
  ctx: BenchContext,
  sizes: QueueBenchSizes,
  dbs: { previous: QueueDatabase; lean: QueueDatabase; current: QueueDatabase; seed: QueueDatabase },
  tpcbDb: PgbenchDatabase,
): Promise<void> {
  const { previous, lean, current, seed } = dbs;
  for (const db of [previous, lean, current]) {
    await db.admin.query(`update matchmaker.settings set criteria_keys = '[{"key":"room"}]'`);
  }
  await current.admin.query(
    `create table public.bench_rpc_floor (id bigint generated always as identity primary key, user_id uuid not null,
       at timestamptz not null default clock_timestamp());
     grant insert on public.bench_rpc_floor to authenticated`,
  );
  const [prevS, leanS, curS, seedS] = await Promise.all([
    sessions(previous, sizes.connections),
    sessions(lean, sizes.connections),
    sessions(current, sizes.connections),
    sessions(seed, sizes.connections),
  ]);
  const nextSeedUser = await seedProfiles(seed, ctx.config.quick ? 30_000 : 100_000);
  const polled: string[] = [];
  const joinOp =
    (pools: number, keep?: string[], asyncCommit = false): LoadOperation =>
    (session) => {
      const user = randomUUID();
      if (keep && keep.length < 2_000) keep.push(user);
      const room = pools === 1 ? 'r0' : `r${Math.floor(Math.random() * pools)}`;
      return queueJoin(session, user, { room }, asyncCommit);
    };
  const seconds = sizes.joinSeconds;
  const rounds = ctx.config.rounds;
  const note = (r: RoundRobinResult) =>
    `median of ${rounds} (${fmt(r.min)}-${fmt(r.max)}), interleaved; ${sizes.connections} connections; ` +
    `${fmt(r.matchedShare * 100)}% of joins matched` +
    (r.errors > 0 ? `; ${r.errors} errors (${r.firstError ?? ''})` : '');

  for (const pools of [1, sizes.manyPools]) {
    const where = pools === 1 ? '1 pool' : `${fmt(pools)} pools`;
    ctx.log.info(`joins/s, ${where}: ${rounds} rounds of ${seconds} s per variant`);
    const variants: Variant[] = [
      {
        key: 'previous',
        label: 'queue tier before 000400',
        run: () => runClosedLoop(prevS, seconds, joinOp(pools)),
      },
      {
        key: 'lean',
        label: 'queue tier before 000800 (session 3)',
        run: () => runClosedLoop(leanS, seconds, joinOp(pools)),
      },
      {
        key: 'current',
        label: 'queue tier (shipped)',
        run: () => runClosedLoop(curS, seconds, joinOp(pools, polled)),
      },
      {
        key: 'async',
        label: 'shipped, synchronous_commit off (bound, unsafe)',
        run: () => runClosedLoop(curS, seconds, joinOp(pools, undefined, true)),
      },
    ];
    if (pools !== 1) {
      // The same join transaction driven by pgbench, the client C_tpcb is measured with (see runPgbenchJoins).
      variants.push(
        {
          key: 'pgbench',
          label: 'shipped, driven by pgbench (same client as C_tpcb)',
          run: () => runPgbenchJoins(ctx.config, current, pools, seconds, sizes.connections),
        },
        {
          key: 'pgbench-lean',
          label: 'before 000800, driven by pgbench',
          run: () => runPgbenchJoins(ctx.config, lean, pools, seconds, sizes.connections),
        },
        {
          key: 'tpcb',
          label: 'pgbench TPC-B in the same rounds (as C_tpcb, not a join)',
          run: () => runPgbenchTpcb(ctx.config, tpcbDb, seconds),
        },
      );
      // The harness's own ceiling: the same PostgREST-shaped transaction (node client, 3 round trips, synchronous
      // commit) around a one-row insert. pgbench, which measures C_tpcb, is a C client; this shows what any write
      // RPC driven from here can reach on this machine, next to the join.
      variants.push({
        key: 'floor',
        label: 'PostgREST-shaped one-row insert (floor of any write RPC)',
        run: () =>
          runClosedLoop(curS, seconds, async (session) => {
            const user = randomUUID();
            await callAsUser(
              session,
              user,
              'insert into public.bench_rpc_floor (user_id) values ($1::uuid)',
              [user],
            );
            return false;
          }),
      });
    }
    if (pools === 1) {
      variants.push({
        key: 'seed',
        label: "design's SQL (insert + process)",
        run: () => runClosedLoop(seedS, seconds, (session) => seedJoin(session, nextSeedUser())),
      });
    }
    const results = await roundRobin(variants, rounds);
    for (const variant of variants) {
      const r = results.get(variant.key);
      if (!r) continue;
      ctx.report(`joins/s, ${where}: ${variant.label}`, r.rate, 'joins/s', {
        ratioTo: 'C_tpcb',
        note: note(r),
      });
    }
    const cur = results.get('current')?.rate ?? Number.NaN;
    const prev = results.get('previous')?.rate ?? Number.NaN;
    const leanRate = results.get('lean')?.rate ?? Number.NaN;
    ctx.report(`joins/s, ${where}: shipped / before 000400`, cur / prev, 'x', { note: 'same rounds' });
    ctx.report(`joins/s, ${where}: shipped / before 000800`, cur / leanRate, 'x', { note: 'same rounds' });
    const pgb = results.get('pgbench')?.rate;
    const pgbLean = results.get('pgbench-lean')?.rate;
    if (pgb !== undefined && pgbLean !== undefined) {
      ctx.report(`joins/s, ${where}, pgbench-driven: shipped / before 000800`, pgb / pgbLean, 'x', {
        note: 'same rounds',
      });
    }
    const joinRounds = results.get('pgbench')?.rounds;
    const tpcbRounds = results.get('tpcb')?.rounds;
    if (joinRounds !== undefined && tpcbRounds !== undefined) {
      const ratios = joinRounds.map((rate, i) => rate / (tpcbRounds[i] ?? Number.NaN));
      ctx.report(`joins/s, ${where}, pgbench-driven / TPC-B of the same round`, median(ratios), 'x', {
        note:
          `median of ${ratios.length} per-round ratios (${ratios.map((r) => r.toFixed(2)).join(', ')}); ` +
          `the join (pgbench -c ${sizes.connections} -j 2) and TPC-B (pgbench -c 8 -j 2) ${pgbenchSeconds(seconds)} s each, in the same round`,
      });
    }
  }

  // DB decision latency at a fixed rate, one pool (every second join claims).
  ctx.log.info(`decision latency: ${sizes.decisionRate} joins/s for ${sizes.decisionSeconds} s, A B A B`);
  const decision = async (s: readonly pg.Client[]) => {
    const histogram = ctx.histogram();
    const r = await runFixedRate(s, sizes.decisionRate, sizes.decisionSeconds, joinOp(1), histogram);
    return { p50: histogram.percentile(50, 'ms'), p99: histogram.percentile(99, 'ms'), late: r.late };
  };
  const lat = await ctx.interleave(
    () => decision(prevS),
    () => decision(curS),
  );
  const latNote = `${sizes.decisionRate} joins/s, 1 pool, PostgREST-style transaction (3 round trips); median of ${rounds}`;
  ctx.report('DB decision p50 (join RPC), shipped', lat.b.median.p50, 'ms', {
    ratioTo: 'C_rtt_p50',
    note: latNote,
  });
  ctx.report('DB decision p99 (join RPC), shipped', lat.b.median.p99, 'ms', {
    ratioTo: 'C_rtt_p99',
    note: latNote,
  });
  ctx.report('DB decision p50 (join RPC), before 000400', lat.a.median.p50, 'ms', {
    ratioTo: 'C_rtt_p50',
    note: latNote,
  });
  ctx.report('DB decision p99 (join RPC), before 000400', lat.a.median.p99, 'ms', {
    ratioTo: 'C_rtt_p99',
    note: latNote,
  });

  // matchmaker_state: the reconcile / poll read, 4 connections (as pgbench -S -c 4). Beside it, A B A B, the same
  // PostgREST-shaped transaction around `select 1`: what any RPC costs before the function does anything (three
  // round trips, where pgbench -S makes one), so the state read's own cost shows as its share of that floor.
  const users = polled.length > 0 ? polled : [randomUUID()];
  const pick = () => users[Math.floor(Math.random() * users.length)] ?? users[0]!;
  const stateSeconds = Math.max(0.5, seconds / 2);
  const calls = await ctx.interleave(
    async () => {
      const r = await runClosedLoop(curS.slice(0, 4), stateSeconds, async (session) => {
        await queueState(session, pick());
        return false;
      });
      return r.opsPerSec;
    },
    async () => {
      const r = await runClosedLoop(curS.slice(0, 4), stateSeconds, async (session) => {
        await callAsUser(session, pick(), 'select $1::text as status', ['state']);
        return false;
      });
      return r.opsPerSec;
    },
  );
  ctx.report('matchmaker_state calls/s (reconcile/poll), 4 connections', calls.a.median, 'calls/s', {
    ratioTo: 'C_sel',
    note: `median of ${rounds}; users with history; ${fmt((calls.a.median / calls.b.median) * 100)}% of the empty PostgREST-shaped call below`,
  });
  ctx.report(
    'PostgREST-shaped call of select 1 (floor of any RPC), 4 connections',
    calls.b.median,
    'calls/s',
    {
      ratioTo: 'C_sel',
      note: `same transaction as every RPC here (begin + set_config, the call, commit: 3 round trips; pgbench -S: 1); A B A B with the row above`,
    },
  );
}

// -----------------------------------------------------------------------------------------------------------------
// 2. Batch path: matches/s on a backlog, 100K drained in committed chunks, the design's processor capped

async function measureBatch(
  ctx: BenchContext,
  sizes: QueueBenchSizes,
  dbs: {
    previous: QueueDatabase;
    serial: QueueDatabase;
    current: QueueDatabase;
    seed: QueueDatabase;
  },
  tpcbDb: PgbenchDatabase,
): Promise<void> {
  const { previous, serial, current, seed } = dbs;
  const rounds = ctx.config.rounds;
  ctx.log.info(`batch: ${fmt(sizes.batchBacklog)} waiting tickets, run_maintenance, A B A B`);
  const batch = async (db: QueueDatabase, workers = 1) => {
    const r = await drainOnce(db, sizes.batchBacklog, workers);
    return { rate: r.matches / r.seconds, seconds: r.seconds };
  };
  const b = await ctx.interleave(
    () => batch(previous),
    () => batch(current),
  );
  const bNote = `${fmt(sizes.batchBacklog)} waiting in 1 pool, CALL matchmaker.run_maintenance(); median of ${rounds}`;
  ctx.report('batch matches/s, shipped', b.b.median.rate, 'matches/s', { ratioTo: 'C_tpcb', note: bNote });
  ctx.report('batch matches/s, before 000400', b.a.median.rate, 'matches/s', {
    ratioTo: 'C_tpcb',
    note: bNote,
  });
  // Several workers on the same pool (20261128000900): the recommended setup, CALL run_maintenance() from
  // BATCH_WORKERS sessions at once, against one session before 000900; then the other two combinations.
  const w = BATCH_WORKERS;
  ctx.log.info(`batch: before 000900 (1 worker) vs shipped (${w} workers), A B A B`);
  const bw = await ctx.interleave(
    () => batch(serial, 1),
    async () => {
      // Then TPC-B right after, for the ratio of this round (see runPgbenchTpcb).
      const drained = await batch(current, w);
      const tpcb = (await runPgbenchTpcb(ctx.config, tpcbDb, sizes.joinSeconds)).opsPerSec;
      return { ...drained, tpcb, ratio: drained.rate / tpcb };
    },
  );
  const wNote = (workers: number) =>
    `${fmt(sizes.batchBacklog)} waiting in 1 pool, CALL matchmaker.run_maintenance() from ${workers} session${workers === 1 ? '' : 's'} at once; median of ${rounds}`;
  ctx.report(`batch matches/s, shipped, ${w} workers (recommended)`, bw.b.median.rate, 'matches/s', {
    ratioTo: 'C_tpcb',
    note: wNote(w),
  });
  ctx.report(`batch matches/s, shipped, ${w} workers / TPC-B of the same round`, bw.b.median.ratio, 'x', {
    note: `median of ${rounds} per-round ratios; each round drains the backlog, then runs pgbench TPC-B (-c 8 -j 2) for ${pgbenchSeconds(sizes.joinSeconds)} s (TPC-B median ${fmt(bw.b.median.tpcb)} tps)`,
  });
  ctx.report('batch matches/s, before 000900, 1 worker', bw.a.median.rate, 'matches/s', {
    ratioTo: 'C_tpcb',
    note: wNote(1),
  });
  ctx.log.info(`batch: shipped (1 worker) vs before 000900 (${w} workers), A B A B`);
  const bs = await ctx.interleave(
    () => batch(current, 1),
    () => batch(serial, w),
  );
  ctx.report('batch matches/s, shipped, 1 worker', bs.a.median.rate, 'matches/s', {
    ratioTo: 'C_tpcb',
    note: wNote(1),
  });
  ctx.report(
    `batch matches/s, before 000900, ${w} workers (serialised by the pool lock)`,
    bs.b.median.rate,
    'matches/s',
    {
      ratioTo: 'C_tpcb',
      note: wNote(w),
    },
  );

  const drainRounds = Math.min(3, rounds);
  ctx.log.info(`drain: ${fmt(sizes.drainBacklog)} waiting tickets, ${drainRounds} rounds`);
  const drains = await ctx.repeat(async () => {
    const r = await drainOnce(current, sizes.drainBacklog);
    return { seconds: r.seconds, chunks: r.chunks, longest: r.longestChunkMs, rate: r.matches / r.seconds };
  }, drainRounds);
  ctx.report(`${fmt(sizes.drainBacklog)} backlog drained, shipped`, drains.median.seconds, 's', {
    note: `${fmt(drains.median.chunks)} chunks, each its own committed transaction; longest chunk ${fmt(drains.median.longest)} ms; ${fmt(drains.median.rate)} matches/s; median of ${drainRounds}`,
  });

  // The design's processor: one call pairs everything, O(n^2); capped so it finishes.
  const cap = sizes.seedDrainCap;
  ctx.log.info(`design's processor vs ours on a ${fmt(cap)} backlog, A B A B`);
  const seedDrain = async () => {
    await seed.admin.query('truncate matchmaking_queue, buddy_matches, profiles cascade');
    await seed.admin.query(
      `with p as (insert into profiles (id, looking_for_buddy) select gen_random_uuid(), true from generate_series(1, $1) returning id)
       insert into matchmaking_queue (user_id, created_at) select id, clock_timestamp() from p`,
      [cap],
    );
    const t0 = performance.now();
    await seed.admin.query('select process_matchmaking_queue()');
    return (performance.now() - t0) / 1_000;
  };
  const d = await ctx.interleave(seedDrain, async () => (await drainOnce(current, cap)).seconds);
  const dNote = `backlog capped at ${fmt(cap)} (the design's call is O(n^2): 100K took 549 s in issue 3); median of ${rounds}`;
  ctx.report(`${fmt(cap)} backlog drained, design's SQL (one call)`, d.a.median, 's', { note: dNote });
  ctx.report(`${fmt(cap)} backlog drained, shipped (run_maintenance)`, d.b.median, 's', { note: dNote });
}

// -----------------------------------------------------------------------------------------------------------------
// 3. Claim time: clean, after 200K finished tickets, under an old snapshot

interface ClaimSide {
  readonly histogram: LatencyHistogram;
  ops: number;
  seconds: number;
}

async function alternate(
  sides: readonly {
    readonly side: ClaimSide;
    readonly s: readonly pg.Client[];
    readonly op: LoadOperation;
  }[],
  totalSeconds: number,
  sliceSeconds: number,
): Promise<void> {
  const deadline = performance.now() + totalSeconds * 1_000;
  while (performance.now() < deadline) {
    for (const { side, s, op } of sides) {
      const r = await runClosedLoop(s, sliceSeconds, op, { histogram: side.histogram, onlyMatched: true });
      side.ops += r.ops;
      side.seconds += r.seconds;
      if (r.errors > 0 && r.firstError) throw new Error(`claim loop failed: ${r.firstError}`);
    }
  }
}

const newSide = (ctx: BenchContext): ClaimSide => ({ histogram: ctx.histogram(), ops: 0, seconds: 0 });

async function measureClaims(
  ctx: BenchContext,
  sizes: QueueBenchSizes,
  open: (schema: QueueSchema) => Promise<QueueDatabase>,
): Promise<void> {
  const [ours, full, seed] = await Promise.all([open('current'), open('current'), open('seed')]);
  const [oursS, fullS, seedS] = await Promise.all([sessions(ours, 2), sessions(full, 2), sessions(seed, 2)]);
  const nextSeedUser = await seedProfiles(seed, ctx.config.quick ? 30_000 : 200_000);
  const oursOp: LoadOperation = (session) => queueJoin(session, randomUUID(), {});
  const seedOp: LoadOperation = (session) => seedJoin(session, nextSeedUser());
  const report = (label: string, side: ClaimSide, ratioNote: string) => {
    const note = `${fmt(side.histogram.count)} claims over 2 connections, one pool; ${fmt(side.ops / side.seconds)} joins/s; ${ratioNote}`;
    ctx.report(`claim p50, ${label}`, side.histogram.percentile(50, 'ms'), 'ms', {
      ratioTo: 'C_rtt_p50',
      note,
    });
    ctx.report(`claim p99, ${label}`, side.histogram.percentile(99, 'ms'), 'ms', {
      ratioTo: 'C_rtt_p99',
      note,
    });
  };
  const p99 = (side: ClaimSide) => side.histogram.percentile(99, 'ms');

  ctx.log.info(`claims: pushing ${fmt(sizes.historyRows)} tickets through a second database's queue`);
  const t0 = performance.now();
  await insertBacklog(full.admin, sizes.historyRows, {});
  await full.admin.query('call matchmaker.run_maintenance()');
  // What autovacuum does soon after; the unvacuumable case is the old-snapshot phase below.
  await full.admin.query('vacuum (analyze) matchmaker.tickets, matchmaker.ticket_history');
  const loaded = (performance.now() - t0) / 1_000;
  const { rows } = await full.admin.query<{ n: number }>(
    'select count(*)::int as n from matchmaker.ticket_history',
  );

  ctx.log.info(
    `claims, clean vs history vs design: ${sizes.claimSeconds} s each in ${sizes.sliceSeconds} s slices`,
  );
  const [cleanOurs, historyOurs, cleanSeed] = [newSide(ctx), newSide(ctx), newSide(ctx)];
  await alternate(
    [
      { side: cleanOurs, s: oursS, op: oursOp },
      { side: historyOurs, s: fullS, op: oursOp },
      { side: cleanSeed, s: seedS, op: seedOp },
    ],
    3 * sizes.claimSeconds,
    sizes.sliceSeconds,
  );

  ctx.log.info(`claims under an old snapshot held ${sizes.snapshotSeconds} s (both databases), A B A B`);
  const holders = await Promise.all([ours.connect(), seed.connect()]);
  const [snapOurs, snapSeed] = [newSide(ctx), newSide(ctx)];
  const [oursHolder, seedHolder] = holders;
  await oursHolder?.query('begin isolation level repeatable read');
  await oursHolder?.query('select count(*) from matchmaker.tickets');
  await seedHolder?.query('begin isolation level repeatable read');
  await seedHolder?.query('select count(*) from matchmaking_queue');
  const heldFrom = performance.now();
  try {
    await alternate(
      [
        { side: snapOurs, s: oursS, op: oursOp },
        { side: snapSeed, s: seedS, op: seedOp },
      ],
      sizes.snapshotSeconds - 0.5,
      sizes.sliceSeconds,
    );
  } finally {
    await Promise.all(holders.map((h) => h.query('commit').catch(() => {})));
  }
  const held = (performance.now() - heldFrom) / 1_000;

  report('shipped, clean (fresh database)', cleanOurs, 'slices interleaved with the next two rows');
  report(
    `shipped, ${fmt(rows[0]?.n ?? 0)} finished rows in history`,
    historyOurs,
    `all went through the tickets table (loaded in ${fmt(loaded, 1)} s, then vacuumed)`,
  );
  report("design's SQL, clean", cleanSeed, 'a join is insert + process; claims = calls that paired');
  report(
    `shipped, old snapshot held ${fmt(held)} s`,
    snapOurs,
    'repeatable-read transaction open throughout',
  );
  report(`design's SQL, old snapshot held ${fmt(held)} s`, snapSeed, 'same window, alternating slices');
  ctx.report('claim p99 with history / clean, shipped', p99(historyOurs) / p99(cleanOurs), 'x', {
    note: 'same time window',
  });
  ctx.report('claim p99 under old snapshot / clean, shipped', p99(snapOurs) / p99(cleanOurs), 'x', {
    note: 'target <= 3x',
  });
  ctx.report("claim p99 under old snapshot / clean, design's SQL", p99(snapSeed) / p99(cleanSeed), 'x');
}

// -----------------------------------------------------------------------------------------------------------------
// 4. Join to both notified, through the local stack (PostgREST rpc + Realtime) with supabase-js

async function measureNotified(ctx: BenchContext, sizes: QueueBenchSizes): Promise<void> {
  ctx.log.info(
    `join-to-both-notified: ${sizes.notifyUsers} supabase-js users at ${sizes.notifyRate} joins/s (QueueStrategy, broadcast)`,
  );
  const stack = await startLocalSupabase();
  ctx.defer(() => stack.stop());
  const session = await stack.db.connect();
  try {
    await applyMigrations(session);
  } finally {
    session.release();
  }
  const clients: SupabaseClient[] = [];
  const matchmakers: Matchmaker[] = [];
  ctx.defer(async () => {
    await Promise.all(matchmakers.map((m) => m.close().catch(() => {})));
    await Promise.all(
      clients.map(async (c) => {
        await c.removeAllChannels();
        await c.realtime.disconnect();
      }),
    );
  });
  const startedAt = new Map<string, number>();
  const matchedAt = new Map<string, number>();
  const matchUsers = new Map<string, string[]>();
  const errors: string[] = [];
  const users = sizes.notifyUsers - (sizes.notifyUsers % 2);
  let matchedCount = 0;
  let resolveAll: () => void = () => {};
  const allMatched = new Promise<void>((resolve) => {
    resolveAll = resolve;
  });
  const ids: string[] = [];
  for (let i = 0; i < users; i += 1) {
    const user = await stack.createUser();
    ids.push(user.id);
    const supabase = createClient(stack.url, stack.anonKey, {
      accessToken: async () => user.accessToken,
      realtime: { transport: WebSocket as unknown as typeof globalThis.WebSocket },
      auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    });
    clients.push(supabase);
    const matchmaker = new Matchmaker(new QueueStrategy({ supabase, notify: 'broadcast' }));
    matchmaker.on('matched', ({ match }) => {
      matchedAt.set(user.id, performance.now());
      const list = matchUsers.get(match.matchId) ?? [];
      list.push(user.id);
      matchUsers.set(match.matchId, list);
      matchedCount += 1;
      if (matchedCount >= users) resolveAll();
    });
    matchmaker.on('error', ({ error }) => {
      errors.push(`${error.code}: ${error.message}`);
    });
    matchmakers.push(matchmaker);
  }
  const before = stack.counters.snapshot();
  const t0 = performance.now() + 100;
  await Promise.all(
    matchmakers.map(async (matchmaker, i) => {
      const at = t0 + (i * 1_000) / sizes.notifyRate;
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, at - performance.now())));
      const id = ids[i];
      if (id === undefined) return;
      startedAt.set(id, performance.now());
      try {
        await matchmaker.start();
      } catch (error) {
        errors.push(error instanceof Error ? error.message : String(error));
      }
    }),
  );
  const timedOut = await Promise.race([
    allMatched.then(() => false),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 30_000).unref()),
  ]);
  const delta = diffCounters(before, stack.counters.snapshot());
  const histogram = ctx.histogram();
  for (const members of matchUsers.values()) {
    if (members.length !== 2) continue;
    const starts = members.map((m) => startedAt.get(m) ?? Number.NaN);
    const ends = members.map((m) => matchedAt.get(m) ?? Number.NaN);
    const latency = Math.max(...ends) - Math.max(...starts);
    if (Number.isFinite(latency)) histogram.recordMs(Math.max(0, latency));
  }
  const matches = matchUsers.size;
  const note =
    `${users} users, ${sizes.notifyRate} joins/s into one pool; from the second join call to both users' ` +
    `'matched' events; ${fmt(histogram.count)} matches, ${fmt(delta.delivered.broadcast / Math.max(1, matches), 2)} ` +
    `broadcasts and ${fmt(delta.rpcCalls / Math.max(1, matches), 1)} RPC calls per match` +
    (timedOut ? `; TIMED OUT with ${matchedCount}/${users} matched` : '') +
    (errors.length > 0 ? `; ${errors.length} errors (${errors[0]})` : '');
  ctx.report('join-to-both-notified p50 (local stack, supabase-js)', histogram.percentile(50, 'ms'), 'ms', {
    ratioTo: 'C_rtt_p50',
    note,
  });
  ctx.report('join-to-both-notified p99 (local stack, supabase-js)', histogram.percentile(99, 'ms'), 'ms', {
    ratioTo: 'C_rtt_p99',
    note,
  });
}

// -----------------------------------------------------------------------------------------------------------------

/** The queue tier against the design's SQL and against itself before the faster join. */
export const benchmark = defineBenchmark({
  name: 'queue',
  description:
    "queue tier: joins/s, batch matches/s, 100K drain, decision and notify latency, claim time; vs the design's SQL",
  calibration: ['C_tpcb', 'C_sel', 'C_rtt'],
  async run(ctx) {
    const sizes = readQueueBenchSizes(process.env, ctx.config.quick);
    await dropStaleQueueDatabases(ctx.config, (message) => ctx.log.info(message));
    const open = async (schema: QueueSchema): Promise<QueueDatabase> => {
      const db = await createQueueDatabase(ctx.config, schema);
      ctx.defer(() => db.drop());
      return db;
    };
    const [previous, lean, serial, current, seed] = await Promise.all([
      open('previous'),
      open('lean'),
      open('serial'),
      open('current'),
      open('seed'),
    ]);
    // TPC-B rounds beside the join and batch rounds (see runPgbenchTpcb).
    const tpcbDb = await createPgbenchDatabase(ctx.config);
    ctx.defer(() => tpcbDb.drop());
    await measureJoins(ctx, sizes, { previous, lean, current, seed }, tpcbDb);
    await measureBatch(ctx, sizes, { previous, serial, current, seed }, tpcbDb);
    await tpcbDb.drop();
    await Promise.all([previous.drop(), lean.drop(), serial.drop(), seed.drop(), current.drop()]);
    await measureClaims(ctx, sizes, open);
    await measureNotified(ctx, sizes);
  },
});
