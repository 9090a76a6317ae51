/**
 * Calibration figures of docs/benchmarks.md, measured at the start of every benchmark run so that results can be
 * reported as ratios to them: `C_tpcb` and `C_sel` (pgbench on a throw-away database), `C_zadd`
 * (redis-benchmark on a reserved, empty Redis database), `C_rtt` (sequential WebSocket echo round trips) and
 * `C_fan` (WebSocket broadcast deliveries per second). Every function cleans up what it created, also on Ctrl-C.
 *
 * @packageDocumentation
 */
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import WebSocket from 'ws';
import { onInterrupt } from './cleanup';
import type { BenchConfig } from './config';
import { createHistogram } from './histogram';
import { parsePgbenchOutput, parseRedisBenchmarkOutput } from './parsers';
import type { WsChildClose, WsChildListening } from './wsCalibrationChild';
import { startWsCalibrationServer } from './wsCalibrationServer';

/** A measurement of the calibration: one per row of the table in docs/benchmarks.md. */
export type CalibrationFigure = 'C_tpcb' | 'C_sel' | 'C_zadd' | 'C_rtt' | 'C_fan';

/** Every calibration figure, in the order they are measured. */
export const CALIBRATION_FIGURES: readonly CalibrationFigure[] = [
  'C_tpcb',
  'C_sel',
  'C_zadd',
  'C_rtt',
  'C_fan',
];

/** A single number a result can be a ratio to (`C_rtt` gives two: its p50 and its p99). */
export type CalibrationKey = 'C_tpcb' | 'C_sel' | 'C_zadd' | 'C_rtt_p50' | 'C_rtt_p99' | 'C_fan';

/** Every {@link CalibrationKey}. */
export const CALIBRATION_KEYS: readonly CalibrationKey[] = [
  'C_tpcb',
  'C_sel',
  'C_zadd',
  'C_rtt_p50',
  'C_rtt_p99',
  'C_fan',
];

/** A value with its unit. */
export interface Quantity {
  readonly value: number;
  readonly unit: string;
}

/** Typical values on a 2-core box, from docs/benchmarks.md (C_fan: middle of its 20,000-29,000 range). */
export const TYPICAL_CALIBRATION: Readonly<Record<CalibrationKey, Quantity & { readonly text: string }>> = {
  C_tpcb: { value: 1_500, unit: 'tps', text: '~1,500 tps' },
  C_sel: { value: 8_000, unit: 'tps', text: '~8,000 tps' },
  C_zadd: { value: 29_000, unit: 'rps', text: '~29,000 rps' },
  C_rtt_p50: { value: 80, unit: 'us', text: '~80 us' },
  C_rtt_p99: { value: 4_000, unit: 'us', text: '~4 ms (VM jitter)' },
  C_fan: { value: 24_500, unit: 'deliveries/s', text: '20,000-29,000 /s' },
};

/** Result of `C_tpcb` or `C_sel`. */
export interface PgbenchResult {
  readonly figure: 'C_tpcb' | 'C_sel';
  /** Transactions per second, without initial connection time. */
  readonly tps: number;
  readonly transactions: number;
  readonly failed: number;
  readonly latencyAverageMs: number | undefined;
  readonly clients: number;
  readonly threads: number;
  readonly seconds: number;
  /** `pgbench -i -s` of the database. */
  readonly scale: number;
  /** The command as run (database name included). */
  readonly command: string;
}

/** Result of `C_zadd`. */
export interface ZaddResult {
  readonly figure: 'C_zadd';
  /** Requests per second, unpipelined. */
  readonly rps: number;
  readonly requests: number;
  readonly clients: number;
  readonly p50Ms: number | undefined;
  readonly p99Ms: number | undefined;
  readonly command: string;
}

/** Result of `C_rtt`. */
export interface RttResult {
  readonly figure: 'C_rtt';
  readonly roundTrips: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly p999Us: number;
  readonly maxUs: number;
  readonly meanUs: number;
}

/** Result of `C_fan`. */
export interface FanResult {
  readonly figure: 'C_fan';
  /** Messages received by all clients together, per second. */
  readonly deliveriesPerSecond: number;
  readonly clients: number;
  /** Broadcasts measured (after warm-up). */
  readonly broadcasts: number;
  readonly deliveries: number;
  readonly seconds: number;
  /** Broadcasts in flight at once. */
  readonly window: number;
  /** From sending a broadcast to its delivery to the last client. */
  readonly broadcastP50Ms: number;
  readonly broadcastP99Ms: number;
}

/** Settings of the Postgres server that change `C_tpcb` a lot; recorded with the figures. */
export interface PostgresSettings {
  readonly version: string;
  readonly fsync: string;
  readonly synchronousCommit: string;
}

/** Every calibration figure measured in one run. Figures not asked for, or that failed, are absent. */
export interface CalibrationResults {
  readonly tpcb?: PgbenchResult;
  readonly sel?: PgbenchResult;
  readonly zadd?: ZaddResult;
  readonly rtt?: RttResult;
  readonly fan?: FanResult;
  readonly postgres?: PostgresSettings;
  /** Failed figures and why. */
  readonly errors: Readonly<Partial<Record<CalibrationFigure, string>>>;
  /** How long each step took, in ms: each figure, plus `pgbench -i` for the database set-up. */
  readonly durationsMs: Readonly<Record<string, number>>;
}

/** Receives progress messages. */
export type CalibrationLog = (message: string) => void;

const silent: CalibrationLog = () => {};

/** The value of `key` in `results`, or undefined when that figure was not measured. */
export function calibrationValue(results: CalibrationResults, key: CalibrationKey): Quantity | undefined {
  switch (key) {
    case 'C_tpcb':
      return results.tpcb && { value: results.tpcb.tps, unit: 'tps' };
    case 'C_sel':
      return results.sel && { value: results.sel.tps, unit: 'tps' };
    case 'C_zadd':
      return results.zadd && { value: results.zadd.rps, unit: 'rps' };
    case 'C_rtt_p50':
      return results.rtt && { value: results.rtt.p50Us, unit: 'us' };
    case 'C_rtt_p99':
      return results.rtt && { value: results.rtt.p99Us, unit: 'us' };
    case 'C_fan':
      return results.fan && { value: results.fan.deliveriesPerSecond, unit: 'deliveries/s' };
  }
}

// ---------------------------------------------------------------------------------------------------------------
// External commands

interface CommandOutput {
  readonly stdout: string;
  readonly stderr: string;
}

export function runCommand(
  command: string,
  args: readonly string[],
  { env, timeoutMs }: { env?: NodeJS.ProcessEnv; timeoutMs: number },
): Promise<CommandOutput> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const unregister = onInterrupt(() => {
      child.kill('SIGKILL');
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      unregister();
      reject(new Error(`cannot run ${command}: ${error.message}`, { cause: error }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      unregister();
      if (code === 0) {
        resolve({ stdout, stderr });
      } else {
        const why = signal ? `was killed by ${signal}` : `exited with ${code}`;
        reject(new Error(`${command} ${args.join(' ')} ${why}:\n${(stderr || stdout).trim().slice(-2000)}`));
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Postgres: C_tpcb and C_sel

/** Prefix of the throw-away databases; the suffix is the creating process id and a random tag. */
export const PGBENCH_DATABASE_PREFIX = 'bench_cal_';

/** A throw-away database initialised by `pgbench -i`. */
export interface PgbenchDatabase {
  readonly name: string;
  readonly scale: number;
  /** Drop the database (terminating leftover sessions). Idempotent. */
  drop(): Promise<void>;
}

function adminClient(config: BenchConfig): pg.Client {
  return new pg.Client({
    host: config.pg.host,
    port: config.pg.port,
    user: config.pg.user,
    database: 'postgres',
    connectionTimeoutMillis: 5_000,
  });
}

/** Run `use` on a connection to the server's `postgres` database, closed afterwards. */
export async function withAdmin<T>(config: BenchConfig, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = adminClient(config);
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export function pgConnectionArgs(config: BenchConfig): string[] {
  return ['-h', config.pg.host, '-p', String(config.pg.port), '-U', config.pg.user];
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Drop the `<prefix><pid>_…` databases left by runs whose process is gone (killed before they cleaned up). Every
 * benchmark that creates throw-away databases names them this way (`bench_cal_`, `bench_q_`).
 */
export async function dropStaleBenchDatabases(
  config: BenchConfig,
  prefix: string,
  log: CalibrationLog = silent,
): Promise<void> {
  const owner = new RegExp(`^${prefix}(\\d+)_`);
  await withAdmin(config, async (client) => {
    const { rows } = await client.query<{ datname: string }>(
      `select datname from pg_database where starts_with(datname, $1)`,
      [prefix],
    );
    for (const { datname } of rows) {
      const pid = Number(owner.exec(datname)?.[1]);
      if (Number.isInteger(pid) && pid !== process.pid && !isProcessAlive(pid)) {
        log(`dropping ${datname}, left by a run that no longer exists`);
        await client.query(`drop database if exists ${quoteIdent(datname)} with (force)`);
      }
    }
  });
}

/** Drop the `bench_cal_<pid>_…` databases left by runs whose process is gone. */
export function dropStalePgbenchDatabases(config: BenchConfig, log: CalibrationLog = silent): Promise<void> {
  return dropStaleBenchDatabases(config, PGBENCH_DATABASE_PREFIX, log);
}

/** Read the server settings recorded beside `C_tpcb`. */
export async function readPostgresSettings(config: BenchConfig): Promise<PostgresSettings> {
  return withAdmin(config, async (client) => {
    const { rows } = await client.query<{ version: string; fsync: string; sc: string }>(
      `select current_setting('server_version') as version, current_setting('fsync') as fsync,
              current_setting('synchronous_commit') as sc`,
    );
    const row = rows[0];
    if (!row) throw new Error('no server settings');
    return { version: row.version, fsync: row.fsync, synchronousCommit: row.sc };
  });
}

/** Create a throw-away database `bench_cal_<pid>_<random>` and fill it with `pgbench -i -s <scale>`. */
export async function createPgbenchDatabase(
  config: BenchConfig,
  log: CalibrationLog = silent,
): Promise<PgbenchDatabase> {
  const name = `${PGBENCH_DATABASE_PREFIX}${process.pid}_${randomBytes(4).toString('hex')}`;
  let dropped = false;
  const drop = async (): Promise<void> => {
    if (dropped) return;
    dropped = true;
    unregister();
    await withAdmin(config, (client) =>
      client.query(`drop database if exists ${quoteIdent(name)} with (force)`),
    );
  };
  const unregister = onInterrupt(drop);
  await withAdmin(config, (client) => client.query(`create database ${quoteIdent(name)}`));
  try {
    log(`pgbench -i -s ${config.pg.scale} ${name}`);
    await runCommand(
      'pgbench',
      [...pgConnectionArgs(config), '-i', '-q', '-s', String(config.pg.scale), name],
      {
        timeoutMs: 600_000,
      },
    );
  } catch (error) {
    await drop();
    throw error;
  }
  return { name, scale: config.pg.scale, drop };
}

async function runPgbench(
  config: BenchConfig,
  database: PgbenchDatabase,
  figure: 'C_tpcb' | 'C_sel',
  log: CalibrationLog,
  seconds: number = config.pg.seconds,
): Promise<PgbenchResult> {
  const [clients, threads] = figure === 'C_tpcb' ? [8, 2] : [4, 2];
  const args = [
    ...(figure === 'C_sel' ? ['-S'] : []),
    '-c',
    String(clients),
    '-j',
    String(threads),
    '-T',
    String(seconds),
  ];
  const command = `pgbench ${args.join(' ')} ${database.name}`;
  log(command);
  const { stdout, stderr } = await runCommand(
    'pgbench',
    [...pgConnectionArgs(config), ...args, database.name],
    {
      // docs/benchmarks.md: synchronous commit on, whatever the server default.
      env: { PGOPTIONS: '-c synchronous_commit=on' },
      timeoutMs: (seconds + 120) * 1_000,
    },
  );
  const report = parsePgbenchOutput(`${stdout}\n${stderr}`);
  return {
    figure,
    tps: report.tps,
    transactions: report.transactions,
    failed: report.failed,
    latencyAverageMs: report.latencyAverageMs,
    clients,
    threads,
    seconds,
    scale: database.scale,
    command,
  };
}

async function withPgbenchDatabase<T>(
  config: BenchConfig,
  database: PgbenchDatabase | undefined,
  log: CalibrationLog,
  use: (database: PgbenchDatabase) => Promise<T>,
): Promise<T> {
  if (database) return use(database);
  const created = await createPgbenchDatabase(config, log);
  try {
    return await use(created);
  } finally {
    await created.drop();
  }
}

/**
 * `C_tpcb`: `pgbench -c 8 -j 2 -T <BENCH_PG_SECONDS>` (TPC-B-like, synchronous commit on) on `database`, or on
 * a throw-away database created and dropped for this measurement. `seconds` (whole seconds) replaces
 * `BENCH_PG_SECONDS` for a shorter run of the same transaction, e.g. a round among a benchmark's variants.
 */
export function measureTpcb(
  config: BenchConfig,
  {
    database,
    log = silent,
    seconds,
  }: { database?: PgbenchDatabase; log?: CalibrationLog; seconds?: number } = {},
): Promise<PgbenchResult> {
  return withPgbenchDatabase(config, database, log, (db) => runPgbench(config, db, 'C_tpcb', log, seconds));
}

/** `C_sel`: `pgbench -S -c 4 -j 2 -T <BENCH_PG_SECONDS>` (select only), like {@link measureTpcb}. */
export function measureSel(
  config: BenchConfig,
  { database, log = silent }: { database?: PgbenchDatabase; log?: CalibrationLog } = {},
): Promise<PgbenchResult> {
  return withPgbenchDatabase(config, database, log, (db) => runPgbench(config, db, 'C_sel', log));
}

// ---------------------------------------------------------------------------------------------------------------
// Redis: C_zadd

/** Keys that `redis-benchmark -t zadd` writes (the second one in cluster mode). */
export const REDIS_BENCHMARK_ZADD_KEYS: readonly string[] = ['myzset', 'myzset{tag}'];

/**
 * `C_zadd`: `redis-benchmark -t zadd -c <clients> -n <requests>` in the reserved database `BENCH_REDIS_DB`
 * (default 15), which must be empty; the keys redis-benchmark wrote are deleted afterwards.
 */
export async function measureZadd(config: BenchConfig, log: CalibrationLog = silent): Promise<ZaddResult> {
  const { host, port, db, requests, clients } = config.redis;
  const redis = new Redis({
    host,
    port,
    db,
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
  });
  await redis.connect();
  const cleanup = async (): Promise<void> => {
    await redis.del(...REDIS_BENCHMARK_ZADD_KEYS);
  };
  let unregister = (): void => {};
  try {
    const size = await redis.dbsize();
    if (size > 0) {
      throw new Error(
        `Redis database ${db} holds ${size} keys but is reserved for redis-benchmark: another benchmark run ` +
          `is using it or a run left keys behind. Set BENCH_REDIS_DB to an empty database index, or empty ` +
          `this one with \`redis-cli -n ${db} flushdb\` if nothing else uses it.`,
      );
    }
    unregister = onInterrupt(cleanup);
    const args = ['-t', 'zadd', '-c', String(clients), '-n', String(requests)];
    const command = `redis-benchmark ${args.join(' ')} --dbnum ${db}`;
    log(command);
    const { stdout, stderr } = await runCommand(
      'redis-benchmark',
      ['-h', host, '-p', String(port), ...args, '--dbnum', String(db), '--csv'],
      { timeoutMs: 600_000 },
    );
    const report = parseRedisBenchmarkOutput(`${stdout}\n${stderr}`).find((r) => r.test.startsWith('ZADD'));
    if (!report) throw new Error(`redis-benchmark printed no ZADD result:\n${stdout.slice(-1000)}`);
    return {
      figure: 'C_zadd',
      rps: report.rps,
      requests,
      clients,
      p50Ms: report.p50Ms,
      p99Ms: report.p99Ms,
      command,
    };
  } finally {
    unregister();
    try {
      await cleanup();
    } finally {
      redis.disconnect();
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// WebSocket: C_rtt and C_fan

/** The calibration WebSocket server, running in a child process. */
interface WsChild {
  readonly port: number;
  close(): Promise<void>;
}

async function startWsServer(config: BenchConfig): Promise<WsChild> {
  if (config.ws.server === 'inprocess') return startWsCalibrationServer();
  const entry = fileURLToPath(new URL('./wsCalibrationChild.ts', import.meta.url));
  const child: ChildProcess = fork(entry, [], {
    execArgv: ['--import', import.meta.resolve('tsx')],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const unregister = onInterrupt(() => {
    child.kill('SIGKILL');
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('calibration WebSocket server did not start in 30 s')),
        30_000,
      );
      child.once('message', (message: WsChildListening) => {
        clearTimeout(timer);
        resolve(message.port);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`calibration WebSocket server exited with ${code}`));
      });
    });
    return {
      port,
      close: async () => {
        unregister();
        if (child.exitCode === null && child.signalCode === null) {
          const close: WsChildClose = { type: 'close' };
          child.send(close);
          const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
          await exited;
          clearTimeout(timer);
        }
      },
    };
  } catch (error) {
    unregister();
    child.kill('SIGKILL');
    throw error;
  }
}

function connect(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { perMessageDeflate: false });
    socket.once('open', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

async function connectMany(url: string, count: number, concurrency = 100): Promise<WebSocket[]> {
  const sockets: WebSocket[] = [];
  try {
    while (sockets.length < count) {
      const batch = Math.min(concurrency, count - sockets.length);
      sockets.push(...(await Promise.all(Array.from({ length: batch }, () => connect(url)))));
    }
    return sockets;
  } catch (error) {
    for (const socket of sockets) socket.terminate();
    throw error;
  }
}

/**
 * `C_rtt`: `BENCH_RTT_ROUNDTRIPS` sequential round trips of a 64-byte text message between a `ws` client in this
 * process and a `ws` echo server in a child process, after a 10% warm-up; p50 and p99 from an HDR histogram.
 */
export async function measureRtt(config: BenchConfig, log: CalibrationLog = silent): Promise<RttResult> {
  const roundTrips = config.ws.roundTrips;
  const warmup = Math.min(1_000, Math.ceil(roundTrips / 10));
  log(`ws echo: ${roundTrips} sequential round trips (+${warmup} warm-up)`);
  const server = await startWsServer(config);
  try {
    const socket = await connect(`ws://127.0.0.1:${server.port}/echo`);
    const histogram = createHistogram();
    const payload = JSON.stringify({ event: 'echo', ref: '0', payload: { pad: 'x'.repeat(17) } }); // 64 bytes
    try {
      await new Promise<void>((resolve, reject) => {
        let done = 0;
        let sentAt = process.hrtime.bigint();
        socket.on('error', reject);
        socket.on('close', () => reject(new Error('echo connection closed early')));
        socket.on('message', () => {
          const now = process.hrtime.bigint();
          if (done >= warmup) histogram.recordNs(now - sentAt);
          done++;
          if (done >= warmup + roundTrips) {
            resolve();
            return;
          }
          sentAt = process.hrtime.bigint();
          socket.send(payload);
        });
        socket.send(payload);
      });
    } finally {
      socket.removeAllListeners('close');
      socket.terminate();
    }
    const s = histogram.summary('us');
    return {
      figure: 'C_rtt',
      roundTrips,
      p50Us: s.p50,
      p99Us: s.p99,
      p999Us: s.p999,
      maxUs: s.max,
      meanUs: s.mean,
    };
  } finally {
    await server.close();
  }
}

/**
 * `C_fan`: `BENCH_FAN_CLIENTS` `ws` clients in this process subscribe to a broadcast server in a child process; a
 * publisher sends ~100-byte JSON messages, up to 8 in flight, which the server sends to every client; every client
 * parses each message. Deliveries per second over `BENCH_FAN_SECONDS`, after a warm-up.
 */
export async function measureFan(config: BenchConfig, log: CalibrationLog = silent): Promise<FanResult> {
  const clients = config.ws.fanClients;
  const window = 8;
  const warmupBroadcasts = 20;
  const measureMs = config.ws.fanSeconds * 1_000;
  log(`ws broadcast to ${clients} clients for ${config.ws.fanSeconds} s`);
  const server = await startWsServer(config);
  const subscribers: WebSocket[] = [];
  let publisher: WebSocket | undefined;
  try {
    subscribers.push(...(await connectMany(`ws://127.0.0.1:${server.port}/fan`, clients)));
    publisher = await connect(`ws://127.0.0.1:${server.port}/fan?role=publisher`);
    const pub = publisher;
    const latency = createHistogram();
    const pad = 'x'.repeat(48);

    const result = await new Promise<{ broadcasts: number; deliveries: number; seconds: number }>(
      (resolve, reject) => {
        const inFlight = new Map<number, { left: number; sentAt: bigint }>();
        let nextId = 0;
        let delivered = 0;
        let measureStart = 0n;
        let startCount = -1;
        let endCount = -1;
        let broadcasts = 0;
        let measured: { broadcasts: number; deliveries: number; seconds: number } | undefined;
        const timeout = setTimeout(
          () => reject(new Error('C_fan: broadcasts stopped arriving')),
          measureMs + 60_000,
        );

        const send = (): void => {
          const id = nextId++;
          inFlight.set(id, { left: clients, sentAt: process.hrtime.bigint() });
          pub.send(JSON.stringify({ type: 'broadcast', event: 'tick', payload: { id, pad } }));
        };
        // Counts every delivery between the completion of the last warm-up broadcast and the first completion
        // after the measuring time, whichever broadcast it belongs to.
        const onDelivery = (data: WebSocket.RawData): void => {
          delivered++;
          const { payload } = JSON.parse(data.toString()) as { payload: { id: number } };
          const entry = inFlight.get(payload.id);
          if (!entry || --entry.left > 0) return;
          inFlight.delete(payload.id);
          const now = process.hrtime.bigint();
          if (startCount < 0) {
            if (payload.id >= warmupBroadcasts - 1) {
              measureStart = now;
              startCount = delivered;
            }
          } else if (endCount < 0) {
            latency.recordNs(now - entry.sentAt);
            broadcasts++;
            const elapsedNs = now - measureStart;
            if (Number(elapsedNs) / 1e6 >= measureMs) {
              endCount = delivered;
              const seconds = Number(elapsedNs) / 1e9;
              measured = { broadcasts, deliveries: endCount - startCount, seconds };
            }
          }
          if (endCount < 0) send();
          else if (inFlight.size === 0 && measured) {
            clearTimeout(timeout);
            resolve(measured);
          }
        };
        for (const socket of subscribers) {
          socket.on('message', onDelivery);
          socket.on('error', reject);
        }
        for (let i = 0; i < window; i++) send();
      },
    );
    const s = latency.summary('ms');
    return {
      figure: 'C_fan',
      deliveriesPerSecond: result.deliveries / result.seconds,
      clients,
      broadcasts: result.broadcasts,
      deliveries: result.deliveries,
      seconds: result.seconds,
      window,
      broadcastP50Ms: s.p50,
      broadcastP99Ms: s.p99,
    };
  } finally {
    publisher?.terminate();
    for (const socket of subscribers) socket.terminate();
    await server.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// All together

/**
 * Measure `figures` (default all) one after the other: `C_tpcb` and `C_sel` share one throw-away database. A
 * figure that fails is recorded in `errors` and the others are still measured.
 */
export async function measureCalibration(
  config: BenchConfig,
  figures: readonly CalibrationFigure[] = CALIBRATION_FIGURES,
  log: CalibrationLog = silent,
): Promise<CalibrationResults> {
  const wanted = new Set(figures);
  const errors: Partial<Record<CalibrationFigure, string>> = {};
  const durationsMs: Record<string, number> = {};
  const results: {
    -readonly [K in keyof CalibrationResults]: CalibrationResults[K];
  } = { errors, durationsMs };

  const attempt = async <T>(
    figure: CalibrationFigure,
    measure: () => Promise<T>,
    step: string = figure,
  ): Promise<T | undefined> => {
    const started = performance.now();
    try {
      return await measure();
    } catch (error) {
      errors[figure] = error instanceof Error ? error.message : String(error);
      log(`${figure} FAILED: ${errors[figure]}`);
      return undefined;
    } finally {
      durationsMs[step] = Math.round(performance.now() - started);
    }
  };

  if (wanted.has('C_tpcb') || wanted.has('C_sel')) {
    let database: PgbenchDatabase | undefined;
    const pgFigure: CalibrationFigure = wanted.has('C_tpcb') ? 'C_tpcb' : 'C_sel';
    try {
      await attempt(
        pgFigure,
        async () => {
          await dropStalePgbenchDatabases(config, log);
          results.postgres = await readPostgresSettings(config);
          if (results.postgres.fsync !== 'on')
            log(`warning: the server runs with fsync=${results.postgres.fsync}`);
          database = await createPgbenchDatabase(config, log);
        },
        'pgbench -i',
      );
      const db = database;
      if (db) {
        if (wanted.has('C_tpcb'))
          results.tpcb = await attempt('C_tpcb', () => measureTpcb(config, { database: db, log }));
        if (wanted.has('C_sel'))
          results.sel = await attempt('C_sel', () => measureSel(config, { database: db, log }));
      } else if (wanted.has('C_sel') && pgFigure !== 'C_sel') {
        errors.C_sel = 'the pgbench database could not be created';
      }
    } finally {
      await database?.drop();
    }
  }
  if (wanted.has('C_zadd')) results.zadd = await attempt('C_zadd', () => measureZadd(config, log));
  if (wanted.has('C_rtt')) results.rtt = await attempt('C_rtt', () => measureRtt(config, log));
  if (wanted.has('C_fan')) results.fan = await attempt('C_fan', () => measureFan(config, log));
  return results;
}
