/**
 * The service tier (`supabase-matchmaker/server` on Redis): end-to-end matches/s at the highest join rate one node
 * sustains with the load generator on the same machine, join-to-both-notified latency at half that load, the SDK
 * path's overhead, memory per idle authenticated connection, and matches/s with 1, 2 and 3 nodes sharing a Redis
 * Cluster. Ratios to `C_zadd` (a Redis round trip), `C_rtt` and `C_fan` of the same run. Sizes: see
 * `bench/README.md`, section "Service tier".
 *
 * @packageDocumentation
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { RedisConnectionOptions } from '../src/server/index';
import { onInterrupt } from './lib/cleanup';
import type { BenchEnv } from './lib/config';
import type { IdleTarget } from './lib/idleClientsChild';
import { RateSearch } from './lib/RateSearch';
import { type BenchContext, defineBenchmark } from './lib/runner';
import {
  connectRawClients,
  connectSdkClients,
  type FixedRateResult,
  type LoadClients,
  runFixedRate,
} from './lib/serviceLoad';
import {
  deleteRedisKeys,
  type IdleClientsProcess,
  readMachineCpu,
  redisClusterSeeds,
  redisCpuSeconds,
  redisUsedMemory,
  type ServiceNodeProcess,
  startIdleClients,
  startServiceNode,
} from './lib/serviceProcesses';
import { BENCH_JWT_SECRET } from './lib/serviceTokens';
import { median } from './lib/stats';
import { formatNumber } from './lib/table';

/** Sizes of the service benchmark, from `BENCH_SERVICE_*` (smaller under `--quick`). */
export interface ServiceBenchSizes {
  /** `BENCH_SERVICE_USERS`: connected load-generator users per node set. */
  readonly users: number;
  /** `BENCH_SERVICE_SDK_USERS`: users of the SDK-path comparison (as many raw users beside them). */
  readonly sdkUsers: number;
  /** `BENCH_SERVICE_SDK_RATE`: join rate of the SDK-path comparison (at most half the sustained rate). */
  readonly sdkRate: number;
  /** `BENCH_SERVICE_WARMUP_MS` / `BENCH_SERVICE_MEASURE_MS`: each fixed-rate run's warm-up and measured window. */
  readonly warmupMs: number;
  readonly measureMs: number;
  /** Longest wait for open searches after a run. */
  readonly drainMs: number;
  /** `BENCH_SERVICE_START_RATE`: first join rate of the search. */
  readonly startRate: number;
  /** `BENCH_SERVICE_STEPS`: most rates tried by one search. */
  readonly steps: number;
  /** Rates are multiples of this. */
  readonly granularity: number;
  /** `BENCH_SERVICE_IDLE`: idle connections held for the memory figure. */
  readonly idle: number;
  /** `BENCH_SERVICE_NODES`: most nodes on the Redis Cluster (1..n). */
  readonly maxNodes: number;
  /** Pools the joins are spread over (one per pair, round-robin). */
  readonly pools: number;
  /** `REDIS_URL`-like URL of the single Redis (`BENCH_SERVICE_REDIS_URL`). */
  readonly redisUrl: string;
  /** `BENCH_SERVICE_PARTS`: which parts run (comma-separated `throughput`, `memory`, `nodes`; default all). */
  readonly parts: ReadonlySet<ServiceBenchPart>;
}

/** The parts of the service benchmark. */
export type ServiceBenchPart = 'throughput' | 'memory' | 'nodes';

const PARTS: readonly ServiceBenchPart[] = ['throughput', 'memory', 'nodes'];

function readParts(env: BenchEnv): Set<ServiceBenchPart> {
  const raw = env.BENCH_SERVICE_PARTS?.trim();
  if (!raw) return new Set(PARTS);
  const parts = raw.split(',').map((part) => part.trim());
  for (const part of parts) {
    if (!PARTS.includes(part as ServiceBenchPart))
      throw new Error(`BENCH_SERVICE_PARTS: unknown part ${part}; use ${PARTS.join(', ')}`);
  }
  return new Set(parts as ServiceBenchPart[]);
}

function readInt(env: BenchEnv, name: string, fallback: number, min = 0): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw.replaceAll('_', ''));
  if (!Number.isInteger(value) || value < min)
    throw new Error(`${name}=${raw}: expected an integer >= ${min}`);
  return value;
}

/** Read {@link ServiceBenchSizes} from the environment. */
export function readServiceBenchSizes(env: BenchEnv, quick: boolean): ServiceBenchSizes {
  const q = (full: number, small: number) => (quick ? small : full);
  return {
    users: readInt(env, 'BENCH_SERVICE_USERS', q(2_000, 200), 4),
    sdkUsers: readInt(env, 'BENCH_SERVICE_SDK_USERS', q(200, 20), 2),
    sdkRate: readInt(env, 'BENCH_SERVICE_SDK_RATE', q(400, 60), 2),
    warmupMs: readInt(env, 'BENCH_SERVICE_WARMUP_MS', q(1_500, 300)),
    measureMs: readInt(env, 'BENCH_SERVICE_MEASURE_MS', q(4_000, 700), 100),
    drainMs: q(3_000, 1_000),
    startRate: readInt(env, 'BENCH_SERVICE_START_RATE', q(1_000, 200), 2),
    steps: readInt(env, 'BENCH_SERVICE_STEPS', q(7, 1), 1),
    granularity: q(100, 20),
    idle: readInt(env, 'BENCH_SERVICE_IDLE', q(19_000, 1_000), 1),
    maxNodes: readInt(env, 'BENCH_SERVICE_NODES', 3, 1),
    pools: 256,
    redisUrl: env.BENCH_SERVICE_REDIS_URL ?? 'redis://127.0.0.1:6379',
    parts: readParts(env),
  };
}

/** One fixed-rate run, with where the CPU time went (all over the whole run: warm-up, window and drain). */
interface RunSample {
  readonly result: FixedRateResult;
  /** CPU time of the nodes per match, microseconds. */
  readonly nodeCpuUs: number;
  /** CPU time of Redis (every master) per match, microseconds. */
  readonly redisCpuUs: number;
  /** Growth of Redis's used memory per match, bytes (ended tickets are kept `endedRetentionMs`, 10 min). */
  readonly redisBytesPerMatch: number;
  /** Cores the rest of the machine (other processes than nodes, Redis and this one) kept busy. */
  readonly othersCores: number;
}

/** Everything a fixed-rate run needs. */
interface Rig {
  readonly name: string;
  readonly nodes: readonly ServiceNodeProcess[];
  readonly redis: RedisConnectionOptions;
  readonly load: LoadClients;
}

function freshPrefix(): string {
  return `mmbench:${randomBytes(5).toString('hex')}:`;
}

function fmt(value: number): string {
  return formatNumber(value);
}

/** Keys under `prefix` are deleted at the end, and on Ctrl-C. */
function cleanKeysLater(ctx: BenchContext, redis: RedisConnectionOptions, prefix: string): void {
  const clean = async () => {
    unregister();
    const deleted = await deleteRedisKeys(redis, prefix);
    ctx.log.info(`deleted ${deleted} Redis keys under ${prefix}`);
  };
  const unregister = onInterrupt(() => deleteRedisKeys(redis, prefix).then(() => undefined));
  ctx.defer(clean);
}

async function startNodes(
  ctx: BenchContext,
  count: number,
  redis: RedisConnectionOptions,
  keyPrefix: string,
): Promise<ServiceNodeProcess[]> {
  const nodes = await Promise.all(
    Array.from({ length: count }, () =>
      startServiceNode({
        jwtSecret: BENCH_JWT_SECRET,
        redis,
        keyPrefix,
        // The limiter stays on (its cost is part of a join), loose enough for simulated users joining often.
        joinRateLimit: { perSecond: 50, burst: 50 },
      }),
    ),
  );
  for (const node of nodes) ctx.defer(() => node.close());
  return nodes;
}

async function connect(
  ctx: BenchContext,
  kind: 'raw' | 'sdk',
  urls: readonly string[],
  count: number,
): Promise<LoadClients> {
  const started = performance.now();
  const load = kind === 'raw' ? await connectRawClients(urls, count) : await connectSdkClients(urls, count);
  ctx.defer(() => load.close());
  ctx.log.info(
    `${count} ${kind} users connected to ${urls.length} node(s) in ${Math.round(performance.now() - started)} ms`,
  );
  return load;
}

async function runOnce(
  ctx: BenchContext,
  sizes: ServiceBenchSizes,
  rig: Rig,
  rate: number,
): Promise<RunSample> {
  const before = await Promise.all(rig.nodes.map((node) => node.stats()));
  const generatorLoop = monitorEventLoopDelay({ resolution: 10 });
  generatorLoop.enable();
  const [redisCpuBefore, redisMemoryBefore, machineBefore] = await Promise.all([
    redisCpuSeconds(rig.redis),
    redisUsedMemory(rig.redis),
    readMachineCpu(),
  ]);
  const started = performance.now();
  const generatorBefore = process.cpuUsage();
  const result = await runFixedRate(rig.load, {
    joinsPerSecond: rate,
    warmupMs: sizes.warmupMs,
    measureMs: sizes.measureMs,
    drainMs: sizes.drainMs,
    pools: sizes.pools,
    poolPrefix: `p${randomBytes(2).toString('hex')}.`,
  });
  const generator = process.cpuUsage(generatorBefore);
  generatorLoop.disable();
  const seconds = (performance.now() - started) / 1_000;
  const after = await Promise.all(rig.nodes.map((node) => node.stats()));
  const [redisCpuAfter, redisMemoryAfter, machineAfter] = await Promise.all([
    redisCpuSeconds(rig.redis),
    redisUsedMemory(rig.redis),
    readMachineCpu(),
  ]);
  let matches = 0;
  let nodeCpuUs = 0;
  for (const [i, stats] of after.entries()) {
    matches += stats.matches - before[i]!.matches;
    nodeCpuUs += stats.cpuUs - before[i]!.cpuUs;
  }
  const redisCpuUs = (redisCpuAfter - redisCpuBefore) * 1e6;
  const oursSeconds = (nodeCpuUs + redisCpuUs + generator.user + generator.system) / 1e6;
  const machineBusy = machineAfter.busySeconds - machineBefore.busySeconds;
  const perMatch = (value: number) => (matches > 0 ? value / matches : Number.NaN);
  const sample: RunSample = {
    result,
    nodeCpuUs: perMatch(nodeCpuUs),
    redisCpuUs: perMatch(redisCpuUs),
    redisBytesPerMatch: perMatch(redisMemoryAfter - redisMemoryBefore),
    othersCores: Math.max(0, machineBusy - oursSeconds) / seconds,
  };
  ctx.log.info(
    `${rig.name} @ ${fmt(rate)} joins/s: ${fmt(result.matchesPerSecond)} matches/s, ` +
      `p50 ${fmt(result.latency.percentile(50, 'ms'))} ms, p99 ${fmt(result.latency.percentile(99, 'ms'))} ms, ` +
      `open ${result.openAtStart}->${result.openAtEnd} (max ${result.openMax}), ` +
      `CPU/match node ${fmt(sample.nodeCpuUs)} us, Redis ${fmt(sample.redisCpuUs)} us, ` +
      `generator ${fmt(result.generatorCpuUsPerMatch)} us; machine ${fmt(machineBusy / seconds)} cores busy, ` +
      `${fmt(sample.othersCores)} by other processes; longest event-loop delay: node ` +
      `${after.map((stats) => fmt(stats.loopDelayMaxMs)).join('/')} ms, generator ${fmt(generatorLoop.max / 1e6)} ms: ` +
      `${result.verdict}`,
  );
  return sample;
}

/** A rate counts as sustained when one of two tries sustains it (the box is shared: one bad second is noise). */
async function trySustain(
  ctx: BenchContext,
  sizes: ServiceBenchSizes,
  rig: Rig,
  rate: number,
): Promise<boolean> {
  if ((await runOnce(ctx, sizes, rig, rate)).result.sustained) return true;
  return (await runOnce(ctx, sizes, rig, rate)).result.sustained;
}

/** The figures of one run that are reported (medians over rounds). */
type RunSummary = {
  readonly joinsPerSec: number;
  readonly matchesPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** 1 when the rate was sustained, else 0. */
  readonly sustained: number;
  readonly nodeCpuUs: number;
  readonly redisCpuUs: number;
  readonly generatorCpuUs: number;
  readonly deliveries: number;
  readonly redisBytesPerMatch: number;
  readonly othersCores: number;
};

function summarize(sample: RunSample): RunSummary {
  const r = sample.result;
  return {
    joinsPerSec: r.joinsPerSecond,
    matchesPerSec: r.matchesPerSecond,
    p50Ms: r.latency.percentile(50, 'ms'),
    p99Ms: r.latency.percentile(99, 'ms'),
    sustained: r.sustained ? 1 : 0,
    nodeCpuUs: sample.nodeCpuUs,
    redisCpuUs: sample.redisCpuUs,
    generatorCpuUs: r.generatorCpuUsPerMatch,
    deliveries: r.deliveriesPerMatch,
    redisBytesPerMatch: sample.redisBytesPerMatch,
    othersCores: sample.othersCores,
  };
}

/** How often {@link confirmRates} may lower a rate that was not sustained in most rounds. */
const MAX_LOWERINGS = 2;

/** Result of {@link confirmRates}, per rig. */
interface Confirmed {
  /** The rate the samples were taken at. */
  readonly rate: number;
  readonly samples: readonly RunSummary[];
  /** Rounds that sustained the rate. */
  readonly sustained: number;
  /** How often the rate was lowered by 15%. */
  readonly lowered: number;
}

/**
 * `rounds` runs of each rig at its rate, interleaved across rigs (1 2 3 1 2 3 …). A rig that sustained its rate in
 * no more than half of its rounds is measured again 15% lower, at most {@link MAX_LOWERINGS} times: the search
 * may have kept a rate that only a quiet moment of the shared machine sustained.
 */
async function confirmRates(
  ctx: BenchContext,
  sizes: ServiceBenchSizes,
  rigs: readonly Rig[],
  startRates: readonly number[],
  rounds: number,
): Promise<Confirmed[]> {
  const rates = [...startRates];
  const samples: RunSummary[][] = rigs.map(() => []);
  const lowered = rigs.map(() => 0);
  const sustainedCount = (i: number) => samples[i]!.filter((sample) => sample.sustained === 1).length;
  let pending = rigs.map((_, i) => i);
  while (pending.length > 0) {
    for (const i of pending) samples[i] = [];
    for (let round = 0; round < rounds; round++) {
      for (const i of pending) samples[i]!.push(summarize(await runOnce(ctx, sizes, rigs[i]!, rates[i]!)));
    }
    pending = pending.filter((i) => {
      if (sustainedCount(i) * 2 > rounds || lowered[i]! >= MAX_LOWERINGS) return false;
      const lower = Math.max(sizes.granularity, roundTo(rates[i]! * 0.85, sizes.granularity));
      if (lower >= rates[i]!) return false;
      ctx.log.warn(
        `${rigs[i]!.name}: ${fmt(rates[i]!)} joins/s sustained in only ${sustainedCount(i)}/${rounds} rounds; ` +
          `measuring again at ${fmt(lower)}`,
      );
      rates[i] = lower;
      lowered[i]! += 1;
      return true;
    });
  }
  return rigs.map((_, i) => ({
    rate: rates[i]!,
    samples: samples[i]!,
    sustained: sustainedCount(i),
    lowered: lowered[i]!,
  }));
}

function roundTo(value: number, granularity: number): number {
  return Math.round(value / granularity) * granularity;
}

function medianOf(samples: readonly RunSummary[], key: keyof RunSummary): number {
  return median(samples.map((sample) => sample[key]));
}

/** `search: …; confirmed in 3/5 rounds`, `(lowered twice from 7,000)`. */
function describeRate(search: RateSearch, confirmed: Confirmed, rounds: number): string {
  const lowered =
    confirmed.lowered > 0 ? ` after lowering it ${confirmed.lowered}x by 15% from ${fmt(search.best)}` : '';
  const none = search.best === 0 ? ' (none sustained: start rate used)' : '';
  return `search: ${search.describe()}${none}; sustained in ${confirmed.sustained}/${rounds} rounds${lowered}`;
}

// ---------------------------------------------------------------------------------------------------------------
// 1 + 2 + SDK path: one node on a single Redis

async function singleNode(ctx: BenchContext, sizes: ServiceBenchSizes): Promise<number> {
  const redis: RedisConnectionOptions = { url: sizes.redisUrl };
  const prefix = freshPrefix();
  cleanKeysLater(ctx, redis, prefix);
  const [node] = await startNodes(ctx, 1, redis, prefix);
  const load = await connect(ctx, 'raw', [node!.url], sizes.users);
  const rig: Rig = { name: '1 node, single Redis', nodes: [node!], redis, load };
  const rounds = ctx.config.rounds;

  ctx.log.info('warm-up run (not reported)');
  await runOnce(ctx, sizes, rig, sizes.startRate);

  const search = new RateSearch({
    start: sizes.startRate,
    steps: sizes.steps,
    granularity: sizes.granularity,
  });
  for (let rate = search.next; rate !== undefined; rate = search.next) {
    search.record(rate, await trySustain(ctx, sizes, rig, rate));
  }
  if (search.best === 0) ctx.log.warn(`no rate was sustained, not even ${fmt(sizes.startRate)} joins/s`);
  const [confirmed] = await confirmRates(
    ctx,
    sizes,
    [rig],
    [search.best > 0 ? search.best : sizes.startRate],
    rounds,
  );
  const best = confirmed!.rate;
  const all = confirmed!.samples;
  const m = (key: keyof RunSummary) => medianOf(all, key);
  const others = `other processes kept ${fmt(m('othersCores'))} cores busy (median)`;
  ctx.report('highest sustained join rate, 1 node', best, 'joins/s', {
    ratioTo: 'C_zadd',
    note: describeRate(search, confirmed!, rounds),
  });
  ctx.report('matches/s at that rate, 1 node', m('matchesPerSec'), 'matches/s', {
    ratioTo: 'C_zadd',
    note:
      `median of ${rounds}; target >= 5,000; ${sizes.users} raw ws users, generator on this machine, ` +
      `persistence off; ${others}`,
  });
  ctx.report('p99 at that rate', m('p99Ms'), 'ms', {
    ratioTo: 'C_rtt_p99',
    note: `p50 ${fmt(m('p50Ms'))} ms`,
  });
  ctx.report('node CPU per match', m('nodeCpuUs'), 'us/match', { note: 'node process user+system' });
  ctx.report('Redis CPU per match', m('redisCpuUs'), 'us/match', { note: 'INFO cpu, user+system' });
  ctx.report('load generator CPU per match', m('generatorCpuUs'), 'us/match', { note: 'this process' });
  // What the CPU time per match (steadier than matches/s on a shared box) allows on idle cores: a node and a
  // Redis each use at most one core.
  const cores = availableParallelism();
  const ceiling = (perMatchUs: number) =>
    Math.min((cores * 1e6) / perMatchUs, 1e6 / m('nodeCpuUs'), 1e6 / m('redisCpuUs'));
  ctx.report(
    'CPU-bound ceiling, 1 node (derived)',
    ceiling(m('nodeCpuUs') + m('redisCpuUs') + m('generatorCpuUs')),
    'matches/s',
    {
      ratioTo: 'C_zadd',
      note: `not measured: ${cores} cores / (node + Redis + generator CPU per match), each process <= 1 core`,
    },
  );
  ctx.report(
    'CPU-bound ceiling without the generator (derived)',
    ceiling(m('nodeCpuUs') + m('redisCpuUs')),
    'matches/s',
    {
      ratioTo: 'C_zadd',
      note: `as above with the load generator on another machine`,
    },
  );
  ctx.report('Redis memory per match', m('redisBytesPerMatch') / 1024, 'KB/match', {
    note: 'used_memory growth; ended tickets are kept endedRetentionMs (default 10 min)',
  });
  ctx.report('deliveries per match', m('deliveries'), 'frames/match', { note: 'frames received by clients' });
  ctx.report('deliveries/s at that rate', m('matchesPerSec') * m('deliveries'), 'deliveries/s', {
    ratioTo: 'C_fan',
    note: 'frames the node pushed to clients per second',
  });

  // 2. Latency at half load.
  const half = Math.max(sizes.granularity, Math.round(best / 2 / sizes.granularity) * sizes.granularity);
  const halfRuns = await ctx.repeat(async () => summarize(await runOnce(ctx, sizes, rig, half)), rounds);
  const h = halfRuns.median;
  const halfNote = `${fmt(half)} joins/s (half of ${fmt(best)}); median of ${rounds}`;
  ctx.report('latency p50 at half load', h.p50Ms, 'ms', { ratioTo: 'C_rtt_p50', note: halfNote });
  ctx.report('latency p99 at half load', h.p99Ms, 'ms', {
    ratioTo: 'C_rtt_p99',
    note: `join call to both users holding the match; target <= 25 ms; p99 of each round: ${halfRuns.samples
      .map((sample) => fmt(sample.p99Ms))
      .join(', ')}`,
  });
  ctx.report('matches/s at half load', h.matchesPerSec, 'matches/s', {
    ratioTo: 'C_zadd',
    note: `other processes kept ${fmt(h.othersCores)} cores busy (median)`,
  });

  // SDK path (Matchmaker + ServiceStrategy) against raw sockets, same node, same user count and rate, A B A B.
  const sdkRate = Math.max(2, Math.min(sizes.sdkRate, half));
  const raw = await connect(ctx, 'raw', [node!.url], sizes.sdkUsers);
  const sdk = await connect(ctx, 'sdk', [node!.url], sizes.sdkUsers);
  const rawRig: Rig = { ...rig, name: `${sizes.sdkUsers} raw users`, load: raw };
  const sdkRig: Rig = { ...rig, name: `${sizes.sdkUsers} SDK users`, load: sdk };
  const { a, b } = await ctx.interleave(
    async () => summarize(await runOnce(ctx, sizes, rawRig, sdkRate)),
    async () => summarize(await runOnce(ctx, sizes, sdkRig, sdkRate)),
  );
  const sdkNote = `${sizes.sdkUsers} users, ${fmt(sdkRate)} joins/s, A B A B, median of ${rounds}`;
  ctx.report('p50, raw ws clients', a.median.p50Ms, 'ms', { ratioTo: 'C_rtt_p50', note: sdkNote });
  ctx.report('p50, SDK (Matchmaker + ServiceStrategy)', b.median.p50Ms, 'ms', { ratioTo: 'C_rtt_p50' });
  ctx.report('p99, raw ws clients', a.median.p99Ms, 'ms', { ratioTo: 'C_rtt_p99' });
  ctx.report('p99, SDK', b.median.p99Ms, 'ms', { ratioTo: 'C_rtt_p99' });
  ctx.report('client CPU per match, raw ws clients', a.median.generatorCpuUs, 'us/match', {
    note: 'both users of a match',
  });
  ctx.report('client CPU per match, SDK', b.median.generatorCpuUs, 'us/match', {
    note: `${fmt(b.median.generatorCpuUs / a.median.generatorCpuUs)}x raw`,
  });
  await Promise.all([raw.close(), sdk.close(), load.close()]);
  await node!.close();
  return best;
}

// ---------------------------------------------------------------------------------------------------------------
// 3. Memory per idle connection

/**
 * Most sockets opened from one source address. One address has ~28,000 ephemeral ports, but binding to an
 * explicit address (`localAddress`) gets slow in the kernel well before: measured here, 2,500 sockets took 0.3 s
 * up to 5,000 per address and 2.1 s between 5,000 and 7,500.
 */
const SOCKETS_PER_SOURCE_ADDRESS = 3_000;
/** File descriptors a node or client process keeps for itself (Redis, listening socket, stdio, epoll…). */
const RESERVED_FDS = 100;

async function idleMemory(ctx: BenchContext, sizes: ServiceBenchSizes): Promise<void> {
  const redis: RedisConnectionOptions = { url: sizes.redisUrl };
  const prefix = freshPrefix();
  cleanKeysLater(ctx, redis, prefix);
  const [first] = await startNodes(ctx, 1, redis, prefix);
  const perProcess = first!.maxOpenFiles - RESERVED_FDS;
  const nodeCount = Math.ceil(sizes.idle / perProcess);
  if (nodeCount > 1) {
    ctx.log.warn(
      `a process may hold ${fmt(first!.maxOpenFiles)} files here (ulimit -n could not be raised to 200,000): ` +
        `${fmt(sizes.idle)} idle connections are spread over ${nodeCount} nodes`,
    );
  }
  const nodes = [first!, ...(await startNodes(ctx, nodeCount - 1, redis, prefix))];
  const perNode = nodes.map(
    (_, i) => Math.floor(sizes.idle / nodeCount) + (i < sizes.idle % nodeCount ? 1 : 0),
  );

  // Warm the nodes' code paths with a few connections, then take the baseline after a full GC.
  const warm = await startIdleClients(
    {
      targets: nodes.map((node) => ({ url: node.url, localAddress: '127.0.0.1', count: 50 })),
      jwtSecret: BENCH_JWT_SECRET,
      concurrency: 50,
    },
    60_000,
  );
  await warm.close();
  await waitFor(async () =>
    (await Promise.all(nodes.map((n) => n.stats()))).every((s) => s.connections === 0),
  );
  const before = await Promise.all(nodes.map((node) => node.stats(true)));

  // One holder process per node (more when a node holds more than a process may open); each source address
  // opens at most SOCKETS_PER_SOURCE_ADDRESS sockets.
  const plans: IdleTarget[][] = [];
  let address = 2;
  for (const [i, node] of nodes.entries()) {
    for (let left = perNode[i]!; left > 0; ) {
      const targets: IdleTarget[] = [];
      for (let inChild = 0; left > 0 && inChild < perProcess; ) {
        const count = Math.min(SOCKETS_PER_SOURCE_ADDRESS, left, perProcess - inChild);
        targets.push({ url: node.url, localAddress: `127.0.0.${address++}`, count });
        left -= count;
        inChild += count;
      }
      plans.push(targets);
    }
  }
  const started = performance.now();
  const holders: IdleClientsProcess[] = [];
  try {
    await Promise.all(
      plans.map(async (targets) => {
        const holder = await startIdleClients(
          { targets, jwtSecret: BENCH_JWT_SECRET, concurrency: 200 },
          600_000,
        );
        holders.push(holder);
        ctx.defer(() => holder.close());
      }),
    );
    const connected = holders.reduce((sum, h) => sum + h.ready.connected, 0);
    const failed = holders.reduce((sum, h) => sum + h.ready.failed, 0);
    const firstError = holders.find((h) => h.ready.firstError)?.ready.firstError;
    ctx.log.info(
      `${fmt(connected)} idle sockets authenticated in ${Math.round(performance.now() - started)} ms` +
        (failed > 0 ? `; ${failed} failed, first: ${firstError}` : ''),
    );
    await sleep(1_000);
    const after = await Promise.all(nodes.map((node) => node.stats(true)));
    let held = 0;
    let rss = 0;
    let heap = 0;
    for (const [i, stats] of after.entries()) {
      held += stats.connections;
      rss += stats.rssBytes - before[i]!.rssBytes;
      heap += stats.heapUsedBytes + stats.externalBytes - before[i]!.heapUsedBytes - before[i]!.externalBytes;
    }
    const where =
      `${nodeCount} node process(es), sockets from ${address - 2} loopback source addresses ` +
      `127.0.0.2-${address - 1}; open-file limit ${fmt(first!.maxOpenFiles)}/process`;
    const asked =
      sizes.idle === 50_000 ? 'target 50,000' : `BENCH_SERVICE_IDLE=${fmt(sizes.idle)}; 50,000 is the target`;
    ctx.report('idle authenticated connections held', held, 'connections', {
      note: `${asked}; ${where}${failed > 0 ? `; ${failed} failed: ${firstError}` : ''}`,
    });
    ctx.report('RSS per idle connection', rss / held / 1024, 'KB', {
      note: `node RSS after/before a full GC, summed over nodes; target <= 10 KB; kernel socket buffers not included`,
    });
    ctx.report('JS heap + external per idle connection', heap / held / 1024, 'KB', {
      note: 'after a full GC',
    });
  } finally {
    await Promise.all(holders.map((h) => h.close()));
    await Promise.all(nodes.map((node) => node.close()));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// 4. 1, 2, 3 nodes on the Redis Cluster

async function scaleOut(ctx: BenchContext, sizes: ServiceBenchSizes, singleBest: number): Promise<void> {
  const seeds = await redisClusterSeeds();
  const redis: RedisConnectionOptions = { cluster: seeds };
  const prefix = freshPrefix();
  cleanKeysLater(ctx, redis, prefix);
  const nodes = await startNodes(ctx, sizes.maxNodes, redis, prefix);
  const counts = Array.from({ length: sizes.maxNodes }, (_, i) => i + 1);
  const rigs: Rig[] = [];
  for (const k of counts) {
    const load = await connect(
      ctx,
      'raw',
      nodes.slice(0, k).map((node) => node.url),
      sizes.users,
    );
    rigs.push({ name: `${k} node(s), Redis Cluster`, nodes: nodes.slice(0, k), redis, load });
  }
  // At most 3 rounds here (9 runs per round of confirmation): the whole part takes ~4 minutes already.
  const rounds = Math.min(ctx.config.rounds, 3);
  ctx.log.info('warm-up runs (not reported)');
  for (const rig of rigs) await runOnce(ctx, sizes, rig, sizes.startRate);

  // The searches run in lockstep: step 1 of 1, 2, 3 nodes, then step 2 of each, and so on.
  const start = Math.max(sizes.startRate, Math.round(singleBest / 2));
  const searches = rigs.map(
    () => new RateSearch({ start, steps: sizes.steps, granularity: sizes.granularity }),
  );
  while (searches.some((s) => s.next !== undefined)) {
    for (const [i, search] of searches.entries()) {
      const rate = search.next;
      if (rate !== undefined) search.record(rate, await trySustain(ctx, sizes, rigs[i]!, rate));
    }
  }
  const confirmed = await confirmRates(
    ctx,
    sizes,
    rigs,
    searches.map((search) => (search.best > 0 ? search.best : sizes.startRate)),
    rounds,
  );
  const one = medianOf(confirmed[0]!.samples, 'matchesPerSec');
  for (const [i, k] of counts.entries()) {
    const { samples } = confirmed[i]!;
    const mps = medianOf(samples, 'matchesPerSec');
    const nodes = `${k} node${k > 1 ? 's' : ''}`;
    ctx.report(`matches/s, ${nodes}, Redis Cluster (3 masters)`, mps, 'matches/s', {
      ratioTo: 'C_zadd',
      note:
        `at ${fmt(confirmed[i]!.rate)} joins/s; ${describeRate(searches[i]!, confirmed[i]!, rounds)}; ` +
        `rounds interleaved ${counts.join(' ')}, median of ${rounds}` +
        (k > 1 ? `; ${fmt(mps / one)}x 1 node` : ''),
    });
    ctx.report(`p99 at that rate, ${nodes}`, medianOf(samples, 'p99Ms'), 'ms', {
      ratioTo: 'C_rtt_p99',
      note:
        `CPU/match: nodes ${fmt(medianOf(samples, 'nodeCpuUs'))} us, Redis ${fmt(medianOf(samples, 'redisCpuUs'))} us; ` +
        `other processes kept ${fmt(medianOf(samples, 'othersCores'))} cores busy (median)`,
    });
  }
  await Promise.all(rigs.map((rig) => rig.load.close()));
  await Promise.all(nodes.map((node) => node.close()));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > until) throw new Error(`condition not met in ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** The service tier benchmark. */
export const benchmark = defineBenchmark({
  name: 'service',
  description:
    'service tier on Redis: sustained matches/s, latency at half load, SDK overhead, memory per idle ' +
    'connection, 1-3 nodes on a Redis Cluster',
  calibration: ['C_zadd', 'C_rtt', 'C_fan'],
  async run(ctx) {
    const sizes = readServiceBenchSizes(process.env, ctx.config.quick);
    ctx.log.info(
      `sizes: ${JSON.stringify({ ...sizes, parts: [...sizes.parts], rounds: ctx.config.rounds })}`,
    );
    const best = sizes.parts.has('throughput') ? await singleNode(ctx, sizes) : sizes.startRate;
    if (sizes.parts.has('memory')) await idleMemory(ctx, sizes);
    if (sizes.parts.has('nodes')) await scaleOut(ctx, sizes, best);
  },
});
