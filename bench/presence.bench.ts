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
import { randomUUID } from 'node:crypto';
import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import WebSocket from 'ws';
import { Matchmaker } from '../src/core/Matchmaker';
import type { MatchmakingStrategy } from '../src/core/MatchmakingStrategy';
import { applyMigrations } from '../src/migrations/applyMigrations';
import { PresenceStrategy } from '../src/strategies/presence/PresenceStrategy';
import { ShardedPresenceStrategy } from '../src/strategies/sharded-presence/ShardedPresenceStrategy';
import type { RealtimeChannelLike } from '../src/strategies/supabaseLike';
import { diffCounters, type LocalSupabase, startLocalSupabase } from '../src/testing/index';
import type { BenchEnv } from './lib/config';
import type { LatencyHistogram } from './lib/histogram';
import { type BenchContext, defineBenchmark } from './lib/runner';

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
}

function readList(env: BenchEnv, name: string, fallback: readonly number[]): readonly number[] {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
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

type Design = 'deterministic' | 'race-everyone';

interface Layout {
  readonly channel: string;
  /** Sharded: shard count (channels `<channel>:<i>`). */
  readonly shards?: number;
}

/** Claims a run's race-everyone clients may still send (shared by all of them). */
interface ClaimBudget {
  remaining: number;
  exhausted: boolean;
}

/** The design's v1 / v1.5 client, as the design describes it. Baseline only. */
class RaceEveryoneStrategy implements MatchmakingStrategy {
  readonly kind: 'presence' | 'sharded-presence';
  #channel: RealtimeChannelLike | undefined;
  #rotation: ReturnType<typeof setInterval> | undefined;
  #done = false;
  #userId = '';
  #payload: Record<string, unknown> = {};
  #shard = 0;
  /** Claims this client sent (counted when sent, like {@link PresenceStrategy.stats}). */
  claims = 0;

  constructor(
    private readonly supabase: SupabaseClient,
    private readonly layout: Layout,
    private readonly budget: ClaimBudget,
  ) {
    this.kind = layout.shards ? 'sharded-presence' : 'presence';
  }

  async search(
    search: Parameters<MatchmakingStrategy['search']>[0],
    listener: Parameters<MatchmakingStrategy['search']>[1],
  ) {
    const begun = await this.supabase.rpc('matchmaker_presence_begin', {
      criteria: search.criteria,
      search_id: search.searchId,
    });
    if (begun.error) throw new Error(begun.error.message);
    const state = begun.data as { user_id: string; search: { started_us: number } };
    this.#userId = state.user_id;
    this.#payload = { user_id: state.user_id, rank_us: state.search.started_us, criteria: search.criteria };
    const shards = this.layout.shards;
    this.#shard = shards ? Math.floor(Math.random() * shards) : 0;
    await this.#join(search.searchId, listener);
    if (shards) {
      // v1.5: "if no match found in 5 seconds, leave current shard and join another (round-robin)".
      this.#rotation = setInterval(() => {
        if (this.#done) return;
        this.#shard = (this.#shard + 1) % shards;
        void this.#leave().then(() => this.#join(search.searchId, listener));
      }, 5000);
    }
    return { status: 'searching' as const };
  }

  async #join(searchId: string, listener: Parameters<MatchmakingStrategy['search']>[1]): Promise<void> {
    if (this.#done) return;
    const name = this.layout.shards ? `${this.layout.channel}:${this.#shard}` : this.layout.channel;
    const channel = this.supabase.channel(name, { config: { presence: { key: '' } } });
    this.#channel = channel;
    const me = this.#userId;
    const myRank = this.#payload.rank_us as number;
    const finish = (match: { id: string; partner_id: string; created_at: string }) => {
      if (this.#done) return;
      this.#done = true;
      void this.#leave();
      const userIds = (me < match.partner_id ? [me, match.partner_id] : [match.partner_id, me]) as [
        string,
        string,
      ];
      listener.matched(searchId, {
        match: { matchId: match.id, userIds, createdAt: match.created_at, strategy: this.kind, criteria: {} },
        userId: me,
      });
    };
    channel
      .on('presence', { event: 'join' }, (payload) => {
        // "When user B joins, user A (already present) gets a join event and calls create_buddy_match(A, B)".
        for (const meta of payload.newPresences) {
          const other = meta.user_id;
          if (typeof other !== 'string' || other === me || this.#done) continue;
          // A is present, B is the newcomer: only searches that began after ours are ours to claim (the
          // join events supabase-js raises for the members already there when we subscribe are not).
          if (!(typeof meta.rank_us === 'number' && meta.rank_us > myRank)) continue;
          if (this.budget.remaining <= 0) {
            this.budget.exhausted = true;
            continue;
          }
          this.budget.remaining -= 1;
          this.claims += 1;
          void this.supabase
            .rpc('matchmaker_presence_claim', { user_a: me, user_b: other })
            .then(({ data }) => {
              const r = data as {
                result?: string;
                match?: { id: string; partner_id: string; created_at: string };
              } | null;
              if (r?.result === 'claimed' && r.match) {
                // "User A broadcasts buddy-matched": everyone in the channel receives it.
                void channel.send({
                  type: 'broadcast',
                  event: 'buddy-matched',
                  payload: { to: other, match: { ...r.match, partner_id: me } },
                });
                finish(r.match);
              }
            });
        }
      })
      .on('broadcast', { event: 'buddy-matched' }, (message) => {
        const p = message.payload as {
          to?: string;
          match?: { id: string; partner_id: string; created_at: string };
        };
        if (p.to === me && p.match) finish(p.match);
      });
    await new Promise<void>((resolve) => {
      channel.subscribe((status) => {
        if (status === 'SUBSCRIBED') {
          void channel.track(this.#payload).then(() => resolve());
        }
      });
    });
  }

  async #leave(): Promise<void> {
    const channel = this.#channel;
    this.#channel = undefined;
    if (channel) await this.supabase.removeChannel(channel as Parameters<SupabaseClient['removeChannel']>[0]);
  }

  async cancel() {
    this.#done = true;
    await this.close();
    return { status: 'cancelled' as const };
  }

  async close() {
    this.#done = true;
    if (this.#rotation) clearInterval(this.#rotation);
    await this.#leave();
  }
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

/**
 * All clients of the benchmark share one process, so their HTTP sockets and the stack's (both ends of every
 * connection) count against one open-file limit. Node's fetch opens a new connection for every concurrent
 * request; 5,000 clients starting within a second would open thousands at once and, with 2 x 5,000 WebSocket
 * ends, pass the 20,000 open files. Capping the requests in flight across all clients at this many bounds
 * the sockets; requests above the cap wait here (first in, first out) instead of in the stack's queue for one
 * of its 10 database connections: it changes where they wait, not how long.
 */
const FETCH_CONCURRENCY = 512;

/** One fetch gate shared by every client of the benchmark, with a count of the requests that failed. */
class FetchGate {
  #running = 0;
  failures = 0;
  /** Requests waiting for a slot (not sent yet). */
  get queued(): number {
    return this.#waiting.length;
  }
  /** Requests sent and not answered yet, and the age of the oldest (ms). */
  readonly #sentAt = new Set<number>();
  get running(): { count: number; oldestMs: number } {
    let oldest = Number.POSITIVE_INFINITY;
    for (const at of this.#sentAt) oldest = Math.min(oldest, at);
    return {
      count: this.#sentAt.size,
      oldestMs: this.#sentAt.size > 0 ? Math.round(performance.now() - oldest) : 0,
    };
  }
  /** Drops every waiting request (it fails without reaching the stack). */
  dropQueued(): number {
    const dropped = this.#waiting.splice(0);
    for (const wake of dropped) wake(false);
    return dropped.length;
  }
  readonly #waiting: ((go: boolean) => void)[] = [];
  readonly fetch: typeof fetch = async (input, init) => {
    if (this.#running >= FETCH_CONCURRENCY) {
      const go = await new Promise<boolean>((resolve) => this.#waiting.push(resolve));
      if (!go) throw new Error('dropped at the end of the benchmark run');
    } else {
      this.#running += 1;
    }
    const sentAt = performance.now() + Math.random() * 1e-6;
    this.#sentAt.add(sentAt);
    try {
      return await fetch(input, init);
    } catch (error) {
      this.failures += 1;
      throw error;
    } finally {
      this.#sentAt.delete(sentAt);
      const next = this.#waiting.shift();
      if (next) next(true);
      else this.#running -= 1;
    }
  };
}

const gate = new FetchGate();

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

/** N searchers start within one second; returns the run's figures (latency recorded into `latency`). */
async function runOnce(
  stack: LocalSupabase,
  n: number,
  design: Design,
  shards: number | undefined,
  spreadMs: number,
  deadlineMs: number,
  claimBudget: number,
  latency: LatencyHistogram,
  log: BenchContext['log'],
): Promise<RunFigures> {
  const budget: ClaimBudget = { remaining: claimBudget, exhausted: false };
  const channel = `bench-${design}-${runSeq++}`;
  const layout: Layout = shards ? { channel, shards } : { channel };
  const clients: SupabaseClient[] = [];
  const matchmakers: Matchmaker[] = [];
  const startedAt: number[] = [];
  const matchedAt: number[] = [];
  const matchOf: string[] = [];
  const ours: (PresenceStrategy | ShardedPresenceStrategy)[] = [];
  const baseline: RaceEveryoneStrategy[] = [];
  const leftover = await drainRpc(stack, 600_000);
  if (leftover.inFlight > 0) {
    log.warn(
      `N=${n} ${design}: ${leftover.inFlight} RPCs of the previous run still in flight; waited ${(leftover.ms / 1000).toFixed(1)} s`,
    );
  }
  const failuresBefore = gate.failures;
  try {
    for (let i = 0; i < n; i += 1) {
      const token = await stack.signToken({ sub: randomUUID(), role: 'authenticated', aud: 'authenticated' });
      const supabase = createClient(stack.url, stack.anonKey, {
        realtime: { transport: WebSocket as unknown as typeof globalThis.WebSocket },
        auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
        global: { fetch: gate.fetch },
        accessToken: async () => token,
      });
      clients.push(supabase);
      const strategy: MatchmakingStrategy =
        design === 'race-everyone'
          ? new RaceEveryoneStrategy(supabase, layout, budget)
          : shards
            ? new ShardedPresenceStrategy({
                supabase,
                shards,
                channelPrefix: channel,
                joinTimeoutMs: 120_000,
              })
            : new PresenceStrategy({ supabase, channel, joinTimeoutMs: 120_000 });
      if (strategy instanceof PresenceStrategy || strategy instanceof ShardedPresenceStrategy)
        ours.push(strategy);
      else if (strategy instanceof RaceEveryoneStrategy) baseline.push(strategy);
      const matchmaker = new Matchmaker(strategy);
      matchmaker.on('matched', ({ match }) => {
        matchedAt[i] = performance.now();
        matchOf[i] = match.matchId;
      });
      matchmakers.push(matchmaker);
    }
    const before = stack.counters.snapshot();
    const t0 = performance.now();
    // The deadline runs from t0 for everything, starts included: when the stack is swamped (race-everyone's
    // claims), late searchers' starts wait behind the claims, and waiting for every start would have no end.
    let startFailures = 0;
    let startsPending = n;
    matchmakers.forEach((m, i) => {
      setTimeout(
        () => {
          startedAt[i] = performance.now();
          m.start().then(
            () => {
              startsPending -= 1;
            },
            (error: unknown) => {
              startsPending -= 1;
              startFailures += 1;
              if (startFailures <= 5) log.warn(`start failed: ${String(error)}`);
            },
          );
        },
        (i / n) * spreadMs,
      );
    });
    const deadline = t0 + deadlineMs;
    while (matchedAt.filter((t) => t !== undefined).length < n && performance.now() < deadline) {
      // Out of claims, and every claim sent has been answered: nothing can change any more.
      if (budget.exhausted && gate.queued === 0 && stack.counters.rpcInFlight === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    if (startsPending > 0 || startFailures > 0) {
      log.warn(`N=${n} ${design}: ${startsPending} starts still pending at the end, ${startFailures} failed`);
    }
    if (budget.exhausted) {
      log.warn(
        `N=${n} ${design}: the rule had sent ${claimBudget} claims (the budget) after ${((performance.now() - t0) / 1000).toFixed(1)} s; it stopped claiming`,
      );
    }
    const seconds = (performance.now() - t0) / 1000;
    await new Promise((resolve) => setTimeout(resolve, 500));
    const delta = diffCounters(before, stack.counters.snapshot());
    // Claims the run's clients sent (the issue's "claims per match"); the stack's count is the cross-check.
    const claims =
      ours.reduce((sum, s) => sum + s.stats.claims, 0) + baseline.reduce((sum, s) => sum + s.claims, 0);
    const serverClaims = delta.rpcByFunction.matchmaker_presence_claim ?? 0;
    log.info(
      `N=${n} ${design}: claims sent ${claims}, answered by the stack in the run ${serverClaims}, ` +
        `RPCs still in flight ${stack.counters.rpcInFlight}, RPC errors ${delta.rpcErrors}, ` +
        `fetch failures ${gate.failures - failuresBefore}, quota stops ${delta.quotaStops}, ` +
        `client fetches running ${JSON.stringify(gate.running)} and queued ${gate.queued}, ` +
        `RPCs ${JSON.stringify(delta.rpcByFunction)}`,
    );
    if (ours.length > 0) {
      const lost: Record<string, number> = {};
      let moves = 0;
      let returns = 0;
      for (const strategy of ours) {
        moves += strategy.stats.moves;
        returns += strategy.stats.returns;
        for (const [reason, count] of Object.entries(strategy.stats.claimsLost)) {
          lost[reason] = (lost[reason] ?? 0) + (count ?? 0);
        }
      }
      log.info(`N=${n} ${design}: lost claims ${JSON.stringify(lost)}, moves ${moves}, returns ${returns}`);
    }
    const unmatched = matchmakers.flatMap((_m, i) => (matchedAt[i] === undefined ? [i] : []));
    if (unmatched.length > 0) {
      // Why: each one's state as the client and the database see it.
      const rows = await stack.db.query<{ status: string; shard: number | null; n: string }>(
        `select status, shard, count(*) as n from matchmaker.presence_searches where status = 'searching' group by status, shard order by shard`,
      );
      const sample = unmatched.slice(0, 12).map((i) => {
        const strategy = ours[i];
        return {
          i,
          startedMsAfterT0: Math.round((startedAt[i] ?? Number.NaN) - t0),
          status: matchmakers[i]?.getSnapshot().status,
          shard: strategy instanceof ShardedPresenceStrategy ? strategy.shard : undefined,
          stats: strategy?.stats,
        };
      });
      log.warn(
        `N=${n} ${design}: ${unmatched.length} unmatched; searches in the database ${JSON.stringify(rows.rows)}; ` +
          `first ones ${JSON.stringify(sample)}`,
      );
    }
    // Latency per user: from its start() call to the moment both users of its match had the match.
    const bothAt = new Map<string, number>();
    matchOf.forEach((id, i) => {
      if (id !== undefined) bothAt.set(id, Math.max(bothAt.get(id) ?? 0, matchedAt[i] as number));
    });
    let pairs = 0;
    const seen = new Map<string, number>();
    matchOf.forEach((id, _i) => {
      if (id === undefined) return;
      seen.set(id, (seen.get(id) ?? 0) + 1);
    });
    const h = latency;
    matchOf.forEach((id, i) => {
      if (id === undefined || seen.get(id) !== 2) return;
      h.recordMs((bothAt.get(id) as number) - (startedAt[i] as number));
    });
    for (const count of seen.values()) if (count === 2) pairs += 1;
    const matches = Math.max(1, pairs);
    const sample = { p50: 0, p99: 0 };
    if (h.count > 0) {
      sample.p50 = h.percentile(50, 'ms');
      sample.p99 = h.percentile(99, 'ms');
    }
    return {
      matchedFraction: (2 * pairs) / n,
      deliveriesPerMatch: delta.deliveredTotal / matches,
      presencePerMatch: delta.presenceEvents / matches,
      broadcastPerMatch: delta.delivered.broadcast / matches,
      claimsPerMatch: claims / matches,
      rpcPerMatch: delta.rpcCalls / matches,
      wastedPct: (100 * Math.max(0, claims - pairs)) / matches,
      p50Ms: sample.p50,
      p99Ms: sample.p99,
      seconds,
      budgetHit: budget.exhausted ? 1 : 0,
    };
  } finally {
    const dropped = gate.dropQueued();
    if (dropped > 0) log.info(`N=${n} ${design}: ${dropped} requests still queued at the end were not sent`);
    await Promise.allSettled(matchmakers.map((m) => m.close()));
    await Promise.allSettled(
      clients.map(async (c) => {
        await c.removeAllChannels();
        await c.realtime.disconnect();
      }),
    );
    const tail = await drainRpc(stack, 600_000);
    if (tail.inFlight > 0) {
      log.info(
        `N=${n} ${design}: ${tail.inFlight} RPCs in flight after the run; drained in ${(tail.ms / 1000).toFixed(1)} s`,
      );
    }
    await stack.db.query('truncate matchmaker.presence_searches, matchmaker.matches, realtime.messages');
  }
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
        ctx.log.info(`${label} N=${n}: ${rounds} round(s), deterministic and race-everyone interleaved`);
        const deterministic = () =>
          runOnce(
            stack,
            n,
            'deterministic',
            shards,
            spreadMs,
            sizes.deadlineMs,
            sizes.claimBudget,
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
