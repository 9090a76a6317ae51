/**
 * The presence tiers (v1 one channel, v1.5 sharded) beside the design's own rule, on the local stack with one
 * unmodified supabase-js client per searcher: deliveries per match, presence events per match, claims per match,
 * and join-to-both-matched latency (p50/p99), for N searchers who all start within one second (and, for the
 * burst rows, at the same moment).
 *
 * - `deterministic`: {@link PresenceStrategy} / {@link ShardedPresenceStrategy} (directed placement).
 * - `race-everyone`: the design's v1 rule, written here only as the baseline: every present searcher that is
 *   not matched claims each newcomer it sees join (a searcher whose search began after its own); the winner
 *   broadcasts `buddy-matched` in the channel and the partner trusts it. Sharded (v1.5): a random shard, and
 *   every 5 s the next shard, round-robin. Claims go through the same race-safe SQL
 *   (`matchmaker_presence_claim`), so both rows count the same database work.
 *
 * Sizes: `BENCH_PRESENCE_SIZES` (default `50,200,1000`), `BENCH_PRESENCE_BURST` (one channel, all N starting at
 * the same moment instead of within a second; default `200`), `BENCH_PRESENCE_SHARDED` (default `1000,5000`),
 * `BENCH_PRESENCE_SHARDS` (50), `BENCH_PRESENCE_DEADLINE_S` (a run still unmatched after this is cut short and
 * reported with the fraction matched; default 120), `BENCH_PRESENCE_ROUNDS` (rounds for N >= 1000; default 1,
 * smaller N use the run's rounds), `BENCH_PRESENCE_CLAIM_BUDGET` (race-everyone stops claiming once the run's
 * clients sent this many; default 200,000: in one channel of 1,000 the rule issues about a million claims within
 * seconds, more than the process can hold queued).
 *
 * Claims per match are the claims the run's clients sent (counted at the clients; the stack's count of answered
 * claims is logged as a cross-check). Between runs the benchmark waits until the stack has answered every RPC,
 * so no run's queued claims are counted in the next one.
 *
 * @packageDocumentation
 */
import { type ChildProcess, fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { applyMigrations } from '../src/migrations/applyMigrations';
import { ShardedPresenceStrategy } from '../src/strategies/sharded-presence/ShardedPresenceStrategy';
import { diffCounters, type LocalSupabase, startLocalSupabase } from '../src/testing/index';
import { onInterrupt } from './lib/cleanup';
import type { BenchEnv } from './lib/config';
import type { LatencyHistogram } from './lib/histogram';
import {
  type ClaimBudget,
  createSearcher,
  type Design,
  epochMs,
  FETCH_CONCURRENCY,
  FetchGate,
  type Layout,
} from './lib/presenceClients';
import type {
  PresenceClientEvent,
  PresenceClientsMessage,
  PresenceClientsOptions,
  PresenceClientsRequest,
  PresenceClientsStatus,
} from './lib/presenceClientsChild';
import { type BenchContext, defineBenchmark } from './lib/runner';

/** From this size on, the searchers' clients run in child processes unless `BENCH_PRESENCE_CLIENT_PROCS` says. */
const AUTO_CLIENT_PROCS_FROM = 5000;
/** Child processes for the searchers' clients when chosen automatically. */
const AUTO_CLIENT_PROCS = 2;

/** Sizes of the presence benchmark. */
export interface PresenceBenchSizes {
  readonly single: readonly number[];
  /** One channel, every searcher starting at the same moment (the scale test's pattern). */
  readonly burst: readonly number[];
  readonly sharded: readonly number[];
  readonly shards: number;
  readonly deadlineMs: number;
  readonly bigRounds: number;
  /** Race-everyone stops claiming once a run's clients have sent this many claims (memory of the process). */
  readonly claimBudget: number;
  /** `BENCH_PRESENCE_BASELINE=off`: deterministic rows only (for diagnosing the strategy; not for figures). */
  readonly baseline: boolean;
  /**
   * Child processes running the searchers' clients at size `n` (0: in the bench process). From
   * `BENCH_PRESENCE_CLIENT_PROCS` when set (0 forces the bench process); else 2 for N >= 5,000, 0 below.
   */
  readonly clientProcs: (n: number) => number;
}

function readList(env: BenchEnv, name: string, fallback: readonly number[]): readonly number[] {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  if (raw.trim() === 'none') return [];
  const values = raw.split(',').map((part) => Number(part.trim().replaceAll('_', '')));
  if (!values.every((v) => Number.isInteger(v) && v >= 2)) throw new Error(`${name}=${raw}: integers >= 2`);
  return values;
}

function readNumber(env: BenchEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name}=${raw} must be a positive number`);
  return value;
}

function readClientProcs(env: BenchEnv): (n: number) => number {
  const raw = env.BENCH_PRESENCE_CLIENT_PROCS;
  if (raw === undefined || raw.trim() === '')
    return (n) => (n >= AUTO_CLIENT_PROCS_FROM ? AUTO_CLIENT_PROCS : 0);
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0 || value > 16) {
    throw new Error(
      `BENCH_PRESENCE_CLIENT_PROCS=${raw}: an integer from 0 (clients in the bench process) to 16`,
    );
  }
  return () => value;
}

/** Sizes from the environment (`quick`: a few seconds). */
export function readPresenceBenchSizes(env: BenchEnv, quick: boolean): PresenceBenchSizes {
  return {
    single: readList(env, 'BENCH_PRESENCE_SIZES', quick ? [20, 50] : [50, 200, 1000]),
    burst: readList(env, 'BENCH_PRESENCE_BURST', quick ? [50] : [200]),
    sharded: readList(env, 'BENCH_PRESENCE_SHARDED', quick ? [200] : [1000, 5000]),
    shards: readNumber(env, 'BENCH_PRESENCE_SHARDS', quick ? 10 : 50),
    deadlineMs: readNumber(env, 'BENCH_PRESENCE_DEADLINE_S', quick ? 30 : 120) * 1000,
    bigRounds: readNumber(env, 'BENCH_PRESENCE_ROUNDS', 1),
    claimBudget: readNumber(env, 'BENCH_PRESENCE_CLAIM_BUDGET', 200_000),
    baseline: env.BENCH_PRESENCE_BASELINE !== 'off',
    clientProcs: readClientProcs(env),
  };
}

/** One run's figures (all per match unless named otherwise). */
interface RunFigures {
  readonly [key: string]: number;
  readonly matchedFraction: number;
  readonly deliveriesPerMatch: number;
  readonly presencePerMatch: number;
  readonly broadcastPerMatch: number;
  readonly claimsPerMatch: number;
  /** Every RPC the stack answered during the run (begin, state, claim, heartbeat, move, end), per match. */
  readonly rpcPerMatch: number;
  readonly wastedPct: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly seconds: number;
  /** 1 when race-everyone ran out of its claim budget (the run was cut short), else 0. */
  readonly budgetHit: number;
}

async function startStack(): Promise<LocalSupabase> {
  const stack = await startLocalSupabase();
  const session = await stack.db.connect();
  try {
    await applyMigrations(session);
  } finally {
    session.release();
  }
  return stack;
}

const gate = new FetchGate(FETCH_CONCURRENCY);

/**
 * Waits until the stack has answered every RPC it received (at most `limitMs`); returns what was in flight at
 * the call and how long it took. A run's claims still queued for a database connection when it ends are
 * counted by the stack only when answered: without this they land in the next run's counters (what made a
 * sharded run after the one-channel race-everyone run show 8 claims per match).
 */
async function drainRpc(stack: LocalSupabase, limitMs: number): Promise<{ inFlight: number; ms: number }> {
  const inFlight = stack.counters.rpcInFlight;
  const t0 = performance.now();
  while (stack.counters.rpcInFlight > 0 && performance.now() - t0 < limitMs) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { inFlight, ms: performance.now() - t0 };
}

let runSeq = 0;

/** What a run's searchers did, indexed by searcher (epoch ms, see {@link epochMs}). */
interface RunRecord {
  readonly userIds: string[];
  readonly startedAt: (number | undefined)[];
  readonly matchedAt: (number | undefined)[];
  readonly matchOf: (string | undefined)[];
  readonly partnerOf: (string | undefined)[];
  /** `matched` events per searcher (exactly-once: 1). */
  readonly matchedEvents: number[];
  matchedCount: number;
  startFailures: number;
}

function recordMatched(
  record: RunRecord,
  index: number,
  at: number,
  matchId: string,
  partnerId: string,
): void {
  record.matchedEvents[index] = (record.matchedEvents[index] ?? 0) + 1;
  if (record.matchedAt[index] !== undefined) return;
  record.matchedAt[index] = at;
  record.matchOf[index] = matchId;
  record.partnerOf[index] = partnerId;
  record.matchedCount += 1;
}

/** What the run's clients tell once it is over. */
interface ClientTotals {
  claims: number;
  claimsLost: Record<string, number>;
  moves: number;
  returns: number;
  fetchFailures: number;
  startsPending: number;
  dropped: number;
  running: { count: number; oldestMs: number }[];
  unmatched: unknown[];
  /** Race-everyone: the claim budget (or a child's share of it) was spent. */
  budgetExhausted: boolean;
  /** CPU seconds of each client child during the run (empty: clients in the bench process). */
  childCpuSeconds: number[];
  /** The first fetch failures' messages. */
  fetchErrors: string[];
}

/** The searchers of one run, driven in this process or in child processes. */
interface RunDriver {
  /** Start searcher `i` at `t0 + i / n * spreadMs` (epoch ms). */
  start(t0: number): void;
  /** Nothing can change any more (race-everyone: out of claims, nothing queued at the clients). */
  exhausted(): boolean;
  /** Requests waiting at the clients. */
  queued(): number;
  /** Stop: the clients' totals (drops requests still queued at the clients). */
  finish(): Promise<ClientTotals>;
  /** Close every client. */
  close(): Promise<void>;
}

function inProcessDriver(
  stack: LocalSupabase,
  tokens: readonly string[],
  design: Design,
  layout: Layout,
  claimBudget: number,
  spreadMs: number,
  record: RunRecord,
  log: BenchContext['log'],
): RunDriver {
  const budget: ClaimBudget = { remaining: claimBudget, exhausted: false };
  const n = tokens.length;
  const searchers = tokens.map((token, i) => {
    const searcher = createSearcher(stack, token, design, layout, budget, gate);
    searcher.matchmaker.on('matched', ({ match }) => {
      recordMatched(record, i, epochMs(), match.matchId, match.partnerId);
    });
    return searcher;
  });
  let startsPending = n;
  const failuresBefore = gate.failures;
  return {
    start(t0) {
      searchers.forEach((s, i) => {
        setTimeout(
          () => {
            record.startedAt[i] = epochMs();
            s.matchmaker.start().then(
              () => {
                startsPending -= 1;
              },
              (error: unknown) => {
                startsPending -= 1;
                record.startFailures += 1;
                if (record.startFailures <= 5) log.warn(`start failed: ${String(error)}`);
              },
            );
          },
          Math.max(0, t0 + (i / n) * spreadMs - epochMs()),
        );
      });
    },
    exhausted: () => budget.exhausted && gate.queued === 0,
    queued: () => gate.queued,
    async finish() {
      const totals: ClientTotals = {
        claims: 0,
        claimsLost: {},
        moves: 0,
        returns: 0,
        fetchFailures: gate.failures - failuresBefore,
        startsPending,
        dropped: 0,
        running: [gate.running],
        unmatched: [],
        budgetExhausted: budget.exhausted,
        childCpuSeconds: [],
        fetchErrors: gate.errors.slice(),
      };
      searchers.forEach((s, i) => {
        if (s.ours) {
          totals.claims += s.ours.stats.claims;
          totals.moves += s.ours.stats.moves;
          totals.returns += s.ours.stats.returns;
          for (const [reason, count] of Object.entries(s.ours.stats.claimsLost)) {
            totals.claimsLost[reason] = (totals.claimsLost[reason] ?? 0) + (count ?? 0);
          }
        }
        if (s.baseline) totals.claims += s.baseline.claims;
        if (record.matchedAt[i] === undefined && totals.unmatched.length < 12) {
          totals.unmatched.push({
            index: i,
            status: s.matchmaker.getSnapshot().status,
            reason: (s.matchmaker.getSnapshot() as { reason?: string }).reason,
            error: (s.matchmaker.getSnapshot() as { error?: Error }).error?.message,
            shard: s.ours instanceof ShardedPresenceStrategy ? s.ours.shard : undefined,
            stats: s.ours?.stats,
          });
        }
      });
      totals.dropped = gate.dropQueued();
      return totals;
    },
    async close() {
      await Promise.allSettled(searchers.map((s) => s.matchmaker.close()));
      await Promise.allSettled(
        searchers.map(async (s) => {
          await s.supabase.removeAllChannels();
          await s.supabase.realtime.disconnect();
        }),
      );
    },
  };
}

/** One child process running a share of the searchers (see `bench/lib/presenceClientsChild.ts`). */
interface ClientsChild {
  readonly process: ChildProcess;
  status: PresenceClientsStatus;
  final: Extract<PresenceClientsMessage, { type: 'final' }> | undefined;
}

async function childProcessDriver(
  stack: LocalSupabase,
  tokens: readonly string[],
  design: Design,
  layout: Layout,
  claimBudget: number,
  spreadMs: number,
  procs: number,
  record: RunRecord,
  log: BenchContext['log'],
): Promise<RunDriver> {
  const n = tokens.length;
  const entry = fileURLToPath(new URL('./lib/presenceClientsChild.ts', import.meta.url));
  const children: ClientsChild[] = [];
  const onEvent = (event: PresenceClientEvent) => {
    if (event.kind === 'started') record.startedAt[event.index] = event.at;
    else if (event.kind === 'matched') {
      recordMatched(record, event.index, event.at, event.matchId, event.partnerId);
    } else {
      record.startFailures += 1;
      if (record.startFailures <= 5) log.warn(`start failed: ${event.error}`);
    }
  };
  const kill = () => {
    for (const child of children) child.process.kill('SIGKILL');
  };
  const unregister = onInterrupt(kill);
  const exits: Promise<void>[] = [];
  try {
    const ready: Promise<void>[] = [];
    for (let k = 0; k < procs; k += 1) {
      const options: PresenceClientsOptions = {
        url: stack.url,
        anonKey: stack.anonKey,
        design,
        layout,
        claimBudget: Math.floor(claimBudget / procs),
        fetchConcurrency: Math.max(1, Math.floor(FETCH_CONCURRENCY / procs)),
      };
      const child: ClientsChild = {
        process: fork(entry, [], {
          execArgv: ['--import', import.meta.resolve('tsx')],
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
          env: { ...process.env, BENCH_PRESENCE_CLIENTS: JSON.stringify(options) },
        }),
        status: { queued: 0, exhausted: false },
        final: undefined,
      };
      children.push(child);
      exits.push(new Promise((resolve) => child.process.once('exit', () => resolve())));
      ready.push(
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`client child ${k}: not ready in 120 s`)), 120_000);
          child.process.once('exit', (code) => {
            clearTimeout(timer);
            reject(new Error(`client child ${k} exited with ${code}`));
          });
          child.process.on('message', (message: PresenceClientsMessage) => {
            if (message.type === 'ready') {
              clearTimeout(timer);
              resolve();
            } else if (message.type === 'events') {
              child.status = message.status;
              for (const event of message.events) onEvent(event);
            } else if (message.type === 'final') {
              child.final = message;
            }
          });
        }),
      );
      // Searcher i runs in child i % procs: each child's share starts spread over the whole second.
      const searchers = tokens.flatMap((token, index) => (index % procs === k ? [{ index, token }] : []));
      const setup: PresenceClientsRequest = { type: 'setup', searchers };
      child.process.send(setup);
    }
    await Promise.all(ready);
  } catch (error) {
    kill();
    unregister();
    throw error;
  }
  const send = (request: PresenceClientsRequest) => {
    for (const child of children) if (child.process.connected) child.process.send(request);
  };
  let closed: Promise<void> | undefined;
  return {
    start(t0) {
      send({ type: 'start', t0, n, spreadMs });
    },
    exhausted: () => children.every((c) => c.status.exhausted && c.status.queued === 0),
    queued: () => children.reduce((sum, c) => sum + c.status.queued, 0),
    async finish() {
      send({ type: 'stop' });
      const t0 = performance.now();
      while (children.some((c) => c.final === undefined && c.process.exitCode === null)) {
        if (performance.now() - t0 > 60_000) throw new Error('client children: no final report in 60 s');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const totals: ClientTotals = {
        claims: 0,
        claimsLost: {},
        moves: 0,
        returns: 0,
        fetchFailures: 0,
        startsPending: 0,
        dropped: 0,
        running: [],
        unmatched: [],
        budgetExhausted: children.some((c) => c.status.exhausted),
        childCpuSeconds: [],
        fetchErrors: [],
      };
      for (const { final } of children) {
        if (!final) throw new Error('a client child exited without its final report');
        totals.claims += final.claims;
        totals.moves += final.moves;
        totals.returns += final.returns;
        totals.fetchFailures += final.fetchFailures;
        totals.startsPending += final.startsPending;
        totals.dropped += final.dropped;
        totals.running.push(final.running);
        totals.childCpuSeconds.push(Math.round(final.cpuSeconds));
        totals.fetchErrors.push(...final.fetchErrors);
        for (const [reason, count] of Object.entries(final.claimsLost)) {
          totals.claimsLost[reason] = (totals.claimsLost[reason] ?? 0) + count;
        }
        totals.unmatched.push(...final.unmatched.map((u) => ({ ...u, userId: record.userIds[u.index] })));
      }
      return totals;
    },
    close() {
      closed ??= (async () => {
        send({ type: 'stop' });
        const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 60_000));
        if ((await Promise.race([Promise.all(exits), timeout])) === 'timeout') {
          log.warn('client children did not exit in 60 s after stop; killed');
          kill();
          await Promise.all(exits);
        }
        unregister();
      })();
      return closed;
    },
  };
}

/** N searchers start within one second; returns the run's figures (latency recorded into `latency`). */
async function runOnce(
  stack: LocalSupabase,
  n: number,
  design: Design,
  shards: number | undefined,
  spreadMs: number,
  deadlineMs: number,
  claimBudget: number,
  clientProcs: number,
  latency: LatencyHistogram,
  log: BenchContext['log'],
): Promise<RunFigures> {
  const channel = `bench-${design}-${runSeq++}`;
  const layout: Layout = shards ? { channel, shards } : { channel };
  const leftover = await drainRpc(stack, 600_000);
  if (leftover.inFlight > 0) {
    log.warn(
      `N=${n} ${design}: ${leftover.inFlight} RPCs of the previous run still in flight; waited ${(leftover.ms / 1000).toFixed(1)} s`,
    );
  }
  const record: RunRecord = {
    userIds: [],
    startedAt: [],
    matchedAt: [],
    matchOf: [],
    partnerOf: [],
    matchedEvents: [],
    matchedCount: 0,
    startFailures: 0,
  };
  const tokens: string[] = [];
  for (let i = 0; i < n; i += 1) {
    const userId = randomUUID();
    record.userIds.push(userId);
    tokens.push(await stack.signToken({ sub: userId, role: 'authenticated', aud: 'authenticated' }));
  }
  const where =
    clientProcs > 0 ? `clients in ${clientProcs} child processes` : 'clients in the bench process';
  log.info(`N=${n} ${design}: ${where}`);
  const driver =
    clientProcs > 0
      ? await childProcessDriver(
          stack,
          tokens,
          design,
          layout,
          claimBudget,
          spreadMs,
          clientProcs,
          record,
          log,
        )
      : inProcessDriver(stack, tokens, design, layout, claimBudget, spreadMs, record, log);
  try {
    const before = stack.counters.snapshot();
    // A little ahead, so that the children have the start message before the first searcher is due.
    const t0 = epochMs() + (clientProcs > 0 ? 200 : 0);
    driver.start(t0);
    const cpuBefore = process.cpuUsage();
    // The deadline runs from t0 for everything, starts included: when the stack is swamped (race-everyone's
    // claims), late searchers' starts wait behind the claims, and waiting for every start would have no end.
    const deadline = t0 + deadlineMs;
    while (record.matchedCount < n && epochMs() < deadline) {
      // Out of claims, and every claim sent has been answered: nothing can change any more.
      if (driver.exhausted() && stack.counters.rpcInFlight === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const seconds = (epochMs() - t0) / 1000;
    const cpu = process.cpuUsage(cpuBefore);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const delta = diffCounters(before, stack.counters.snapshot());
    const queuedAtEnd = driver.queued();
    const totals = await driver.finish();
    if (totals.startsPending > 0 || record.startFailures > 0) {
      log.warn(
        `N=${n} ${design}: ${totals.startsPending} starts still pending at the end, ${record.startFailures} failed`,
      );
    }
    const budgetHit = totals.budgetExhausted;
    if (budgetHit) {
      log.warn(
        `N=${n} ${design}: the rule had sent ${claimBudget} claims (the budget) after ${seconds.toFixed(1)} s; it stopped claiming`,
      );
    }
    // Claims the run's clients sent (the issue's "claims per match"); the stack's count is the cross-check.
    const claims = totals.claims;
    const serverClaims = delta.rpcByFunction.matchmaker_presence_claim ?? 0;
    log.info(
      `N=${n} ${design}: claims sent ${claims}, answered by the stack in the run ${serverClaims}, ` +
        `RPCs still in flight ${stack.counters.rpcInFlight}, RPC errors ${delta.rpcErrors}, ` +
        `fetch failures ${totals.fetchFailures} ${JSON.stringify(totals.fetchErrors)}, quota stops ${delta.quotaStops}, ` +
        `client fetches running ${JSON.stringify(totals.running)} and queued ${queuedAtEnd}, ` +
        `RPCs ${JSON.stringify(delta.rpcByFunction)} in ${seconds.toFixed(1)} s; CPU s of the bench process ` +
        `${Math.round((cpu.user + cpu.system) / 1e6)}, of the client children ${JSON.stringify(totals.childCpuSeconds)}`,
    );
    if (design === 'deterministic') {
      log.info(
        `N=${n} ${design}: lost claims ${JSON.stringify(totals.claimsLost)}, moves ${totals.moves}, returns ${totals.returns}`,
      );
    }
    const unmatchedCount = n - record.matchedCount;
    if (unmatchedCount > 0) {
      // Why: each one's state as the client and the database see it.
      const rows = await stack.db.query<{ status: string; shard: number | null; n: string }>(
        `select status, shard, count(*) as n from matchmaker.presence_searches where status = 'searching' group by status, shard order by shard`,
      );
      const sample = totals.unmatched.slice(0, 12).map((u) => {
        const index = (u as { index: number }).index;
        return {
          ...(u as object),
          startedMsAfterT0: Math.round((record.startedAt[index] ?? Number.NaN) - t0),
        };
      });
      const unmatchedIds = record.userIds.filter((_id, i) => record.matchedAt[i] === undefined);
      const ended = await stack.db.query<{ status: string; reason: string | null; n: string }>(
        `select status, reason, count(*) as n from matchmaker.presence_searches where user_id = any($1::uuid[])
         group by status, reason order by n desc`,
        [unmatchedIds],
      );
      log.warn(
        `N=${n} ${design}: ${unmatchedCount} unmatched; searches in the database ${JSON.stringify(rows.rows)}; ` +
          `the unmatched users' searches by status and reason ${JSON.stringify(ended.rows)}; ` +
          `first ones ${JSON.stringify(sample)}`,
      );
    }
    return figuresOf(record, n, design, delta, claims, seconds, budgetHit, latency, log);
  } finally {
    await driver.close();
    const tail = await drainRpc(stack, 600_000);
    if (tail.inFlight > 0) {
      log.info(
        `N=${n} ${design}: ${tail.inFlight} RPCs in flight after the run; drained in ${(tail.ms / 1000).toFixed(1)} s`,
      );
    }
    await stack.db.query('truncate matchmaker.presence_searches, matchmaker.matches, realtime.messages');
  }
}

/**
 * A run's figures from what its searchers did. Checks exactly-once on the way: every searcher got one
 * `matched` event, and the two searchers of a match id name each other as partners (logged when not).
 */
function figuresOf(
  record: RunRecord,
  n: number,
  design: Design,
  delta: ReturnType<typeof diffCounters>,
  claims: number,
  seconds: number,
  budgetHit: boolean,
  latency: LatencyHistogram,
  log: BenchContext['log'],
): RunFigures {
  const members = new Map<string, number[]>();
  record.matchOf.forEach((id, i) => {
    if (id === undefined) return;
    const list = members.get(id) ?? [];
    list.push(i);
    members.set(id, list);
  });
  const duplicates = record.matchedEvents.filter((count) => count > 1).length;
  let pairs = 0;
  let badPairs = 0;
  for (const [, list] of members) {
    const [a, b] = list;
    if (
      list.length === 2 &&
      a !== undefined &&
      b !== undefined &&
      record.partnerOf[a] === record.userIds[b] &&
      record.partnerOf[b] === record.userIds[a]
    ) {
      pairs += 1;
      // Latency per user: from its start() call to the moment both users of its match had the match.
      const both = Math.max(record.matchedAt[a] as number, record.matchedAt[b] as number);
      latency.recordMs(both - (record.startedAt[a] as number));
      latency.recordMs(both - (record.startedAt[b] as number));
    } else {
      badPairs += 1;
    }
  }
  const check =
    `exactly-once: ${record.matchedCount} of ${n} matched, ${pairs} matches with both sides agreeing, ` +
    `${badPairs} match ids without exactly two agreeing sides, ${duplicates} searchers with more than one matched event`;
  if (badPairs > 0 || duplicates > 0) log.warn(`N=${n} ${design}: ${check}`);
  else log.info(`N=${n} ${design}: ${check}`);
  const matches = Math.max(1, pairs);
  return {
    matchedFraction: (2 * pairs) / n,
    deliveriesPerMatch: delta.deliveredTotal / matches,
    presencePerMatch: delta.presenceEvents / matches,
    broadcastPerMatch: delta.delivered.broadcast / matches,
    claimsPerMatch: claims / matches,
    rpcPerMatch: delta.rpcCalls / matches,
    wastedPct: (100 * Math.max(0, claims - pairs)) / matches,
    p50Ms: latency.count > 0 ? latency.percentile(50, 'ms') : 0,
    p99Ms: latency.count > 0 ? latency.percentile(99, 'ms') : 0,
    seconds,
    budgetHit: budgetHit ? 1 : 0,
  };
}

function reportPair(
  ctx: BenchContext,
  label: string,
  n: number,
  rounds: number,
  a: RunFigures,
  b: RunFigures,
  aLatency: LatencyHistogram,
  bLatency: LatencyHistogram,
  claimBudget: number,
): void {
  const budgetNote = claimBudget.toLocaleString('en-US');
  const note = `${rounds === 1 ? '1 run' : `median of ${rounds}`}, N=${n}`;
  for (const [design, figures, latency] of [
    ['deterministic', a, aLatency],
    ['race-everyone', b, bLatency],
  ] as const) {
    const prefix = `${label} N=${n} ${design}`;
    const cut =
      figures.budgetHit > 0
        ? `; cut short: the rule sent ${budgetNote} claims (budget) and stopped, ${(figures.matchedFraction * 100).toFixed(1)}% matched`
        : figures.matchedFraction < 1
          ? `; only ${(figures.matchedFraction * 100).toFixed(1)}% matched before the deadline`
          : '';
    ctx.report(`${prefix}: deliveries/match`, figures.deliveriesPerMatch, 'msg', { note: `${note}${cut}` });
    ctx.report(`${prefix}: presence events/match`, figures.presencePerMatch, 'msg', { note });
    ctx.report(`${prefix}: broadcasts/match`, figures.broadcastPerMatch, 'msg', { note });
    ctx.report(`${prefix}: claims/match`, figures.claimsPerMatch, 'calls', {
      note: `${note}; ${figures.wastedPct.toFixed(1)}% wasted${cut}`,
    });
    ctx.report(`${prefix}: RPCs/match (all functions)`, figures.rpcPerMatch, 'calls', { note });
    ctx.report(`${prefix}: join-to-both-matched p50`, latency.percentile(50, 'ms'), 'ms', {
      ratioTo: 'C_rtt_p50',
      note: `${note}; all rounds pooled`,
    });
    ctx.report(`${prefix}: join-to-both-matched p99`, latency.percentile(99, 'ms'), 'ms', {
      ratioTo: 'C_rtt_p50',
      note: `${note}; all rounds pooled`,
    });
  }
}

/** The presence tiers beside the design's race-everyone rule. */
export const benchmark = defineBenchmark({
  name: 'presence',
  description:
    'presence tiers: deliveries, claims and latency per match, deterministic rule vs race-everyone',
  calibration: ['C_rtt', 'C_fan'],
  async run(ctx) {
    const sizes = readPresenceBenchSizes(process.env, ctx.config.quick);
    const stack = await startStack();
    ctx.defer(() => stack.stop());
    ctx.log.info(
      `single channel N=${sizes.single.join(',')}, all at once N=${sizes.burst.join(',')}; ` +
        `sharded (S=${sizes.shards}) N=${sizes.sharded.join(',')}`,
    );
    for (const [label, list, shards, spreadMs] of [
      ['one channel', sizes.single, undefined, 1000],
      ['one channel, all at once', sizes.burst, undefined, 0],
      [`${sizes.shards} shards`, sizes.sharded, sizes.shards, 1000],
    ] as const) {
      for (const n of list) {
        const rounds = n >= 1000 ? sizes.bigRounds : Math.min(3, ctx.config.rounds);
        const [aLatency, bLatency] = [ctx.histogram(), ctx.histogram()];
        ctx.log.info(
          `${label} N=${n}: ${rounds} round(s), ${sizes.baseline ? 'deterministic and race-everyone interleaved' : 'deterministic only (baseline off)'}`,
        );
        const deterministic = () =>
          runOnce(
            stack,
            n,
            'deterministic',
            shards,
            spreadMs,
            sizes.deadlineMs,
            sizes.claimBudget,
            sizes.clientProcs(n),
            aLatency,
            ctx.log,
          );
        if (!sizes.baseline) {
          const only = await ctx.repeat(deterministic, rounds);
          ctx.log.info(`${label} N=${n}: deterministic ${JSON.stringify(only.median)} (baseline off)`);
          continue;
        }
        const { a, b } = await ctx.interleave(
          deterministic,
          () =>
            runOnce(
              stack,
              n,
              'race-everyone',
              shards,
              spreadMs,
              sizes.deadlineMs,
              sizes.claimBudget,
              sizes.clientProcs(n),
              bLatency,
              ctx.log,
            ),
          rounds,
        );
        ctx.log.info(
          `${label} N=${n}: deterministic ${JSON.stringify(a.median)}; race-everyone ${JSON.stringify(b.median)}`,
        );
        reportPair(
          ctx,
          label,
          n,
          rounds,
          a.median as RunFigures,
          b.median as RunFigures,
          aLatency,
          bLatency,
          sizes.claimBudget,
        );
      }
    }
  },
});
