/**
 * Sizes and endpoints of a benchmark run, read from the environment. `BENCH_QUICK=1` (or `--quick`) scales every
 * duration and size down about 10x so the whole harness can be smoke-tested in seconds; the figures it prints are
 * then only good for checking that the harness works.
 *
 * @packageDocumentation
 */

/** Everything the calibration and the benchmarks read from the environment. */
export interface BenchConfig {
  /** `BENCH_QUICK=1`: every size and duration about 10x smaller. */
  readonly quick: boolean;
  /** `BENCH_ROUNDS`: rounds of `ctx.interleave` and `ctx.repeat` when not given. */
  readonly rounds: number;
  /** Postgres server the calibration creates its throw-away database on. */
  readonly pg: {
    /** `PGHOST`, default `127.0.0.1`. */
    readonly host: string;
    /** `PGPORT`, default `5432`. */
    readonly port: number;
    /** `PGUSER`, default `postgres`. */
    readonly user: string;
    /** `BENCH_PG_SCALE`: `pgbench -i -s`, default 10 (quick: 1). */
    readonly scale: number;
    /** `BENCH_PG_SECONDS`: `pgbench -T` of `C_tpcb` and `C_sel`, default 20 (quick: 2). */
    readonly seconds: number;
  };
  /** Redis server of `C_zadd`. */
  readonly redis: {
    /** `BENCH_REDIS_HOST`, default `127.0.0.1`. */
    readonly host: string;
    /** `BENCH_REDIS_PORT`, default `6379`. */
    readonly port: number;
    /** `BENCH_REDIS_DB`: database index reserved for `redis-benchmark`, default 15. It must be empty. */
    readonly db: number;
    /** `BENCH_ZADD_REQUESTS`: `redis-benchmark -n`, default 300,000 (quick: 30,000). */
    readonly requests: number;
    /** `BENCH_ZADD_CLIENTS`: `redis-benchmark -c`, default 50. */
    readonly clients: number;
  };
  /** WebSocket figures `C_rtt` and `C_fan`. */
  readonly ws: {
    /** `BENCH_RTT_ROUNDTRIPS`: sequential echo round trips, default 30,000 (quick: 3,000). */
    readonly roundTrips: number;
    /** `BENCH_FAN_CLIENTS`: subscribers of the broadcast, default 1,000 (quick: 100). */
    readonly fanClients: number;
    /**
     * `BENCH_WS_SERVER`: where the WebSocket server of `C_rtt` and `C_fan` runs, `child` (a child process, so
     * server and clients use different cores; default) or `inprocess` (same event loop as the clients).
     */
    readonly server: 'child' | 'inprocess';
    /** `BENCH_FAN_SECONDS`: how long broadcasts are sent, default 5 (quick: 0.5). */
    readonly fanSeconds: number;
  };
}

/** Environment of a run, as `process.env`. */
export type BenchEnv = Readonly<Record<string, string | undefined>>;

/** Whether an environment flag such as `BENCH_QUICK` is set to a true value (`1`, `true`, `yes`). */
export function isTruthyFlag(value: string | undefined): boolean {
  return value !== undefined && /^(1|true|yes|on)$/i.test(value.trim());
}

function readNumber(env: BenchEnv, name: string, fallback: number, { integer = true, min = 0 } = {}): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw.replaceAll('_', ''));
  if (!Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
    throw new Error(`${name}=${raw} is not a valid ${integer ? 'integer' : 'number'} >= ${min}`);
  }
  return value;
}

function readWsServer(env: BenchEnv): 'child' | 'inprocess' {
  const raw = env.BENCH_WS_SERVER?.trim() || 'child';
  if (raw !== 'child' && raw !== 'inprocess')
    throw new Error(`BENCH_WS_SERVER=${raw}: use child or inprocess`);
  return raw;
}

/**
 * Read the configuration of a run.
 *
 * @param env - environment, usually `process.env`
 * @param overrides - `quick` from the command line wins over `BENCH_QUICK`
 */
export function readBenchConfig(env: BenchEnv, overrides: { quick?: boolean } = {}): BenchConfig {
  const quick = overrides.quick ?? isTruthyFlag(env.BENCH_QUICK);
  const q = (full: number, small: number): number => (quick ? small : full);
  return {
    quick,
    rounds: readNumber(env, 'BENCH_ROUNDS', q(5, 3), { min: 1 }),
    pg: {
      host: env.PGHOST ?? '127.0.0.1',
      port: readNumber(env, 'PGPORT', 5432, { min: 1 }),
      user: env.PGUSER ?? 'postgres',
      scale: readNumber(env, 'BENCH_PG_SCALE', q(10, 1), { min: 1 }),
      seconds: readNumber(env, 'BENCH_PG_SECONDS', q(20, 2), { min: 1 }),
    },
    redis: {
      host: env.BENCH_REDIS_HOST ?? '127.0.0.1',
      port: readNumber(env, 'BENCH_REDIS_PORT', 6379, { min: 1 }),
      db: readNumber(env, 'BENCH_REDIS_DB', 15),
      requests: readNumber(env, 'BENCH_ZADD_REQUESTS', q(300_000, 30_000), { min: 1 }),
      clients: readNumber(env, 'BENCH_ZADD_CLIENTS', 50, { min: 1 }),
    },
    ws: {
      roundTrips: readNumber(env, 'BENCH_RTT_ROUNDTRIPS', q(30_000, 3_000), { min: 1 }),
      fanClients: readNumber(env, 'BENCH_FAN_CLIENTS', q(1_000, 100), { min: 1 }),
      server: readWsServer(env),
      fanSeconds: readNumber(env, 'BENCH_FAN_SECONDS', q(5, 0.5), { integer: false, min: 0.1 }),
    },
  };
}
