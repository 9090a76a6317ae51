/**
 * A tiny benchmark framework. A benchmark is `{ name, run(ctx) }`; `ctx` carries the calibration figures of the
 * run, a logger, median helpers (`repeat`, `interleave` for A B A B comparisons) and `report`, which records one
 * row of the benchmark's table, with its ratio to a calibration figure.
 *
 * @packageDocumentation
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { arch, cpus, hostname, loadavg, platform, totalmem } from 'node:os';
import { dirname } from 'node:path';
import {
  type CalibrationFigure,
  type CalibrationKey,
  type CalibrationResults,
  calibrationValue,
} from './calibration';
import type { BenchConfig } from './config';
import { createHistogram, type LatencyHistogram } from './histogram';
import { type Interleaved, interleaveRuns, repeatRuns, type Sample, type SampleSet } from './stats';
import { formatReportTable, type ReportRow } from './table';
import { ratioBetween } from './units';

/** Progress messages of a benchmark (to stderr, so that stdout holds only the tables). */
export interface BenchLogger {
  info(message: string): void;
  warn(message: string): void;
}

/** Options of {@link BenchContext.report}. */
export interface ReportOptions {
  /** Also give the value as a ratio to this calibration figure of the same run (units must be of one kind). */
  readonly ratioTo?: CalibrationKey;
  /** Free text for the note column, e.g. `median of 5`. */
  readonly note?: string;
}

/** What a benchmark's `run` receives. */
export interface BenchContext {
  /** Name of the running benchmark. */
  readonly name: string;
  /** Sizes and endpoints of the run (`config.quick` under `--quick`). */
  readonly config: BenchConfig;
  /** Calibration figures measured at the start of this run. */
  readonly calibration: CalibrationResults;
  readonly log: BenchLogger;
  /** A calibration figure's value, e.g. `figure('C_rtt_p50')` is `{ value: 82, unit: 'us' }`. Throws if not measured. */
  figure(key: CalibrationKey): { readonly value: number; readonly unit: string };
  /** `full`, or `quick` (default `full / 10`, at least 1) under `--quick`. */
  scaled(full: number, quick?: number): number;
  /** A new HDR latency histogram. */
  histogram(): LatencyHistogram;
  /** Run `run` `rounds` times (default `config.rounds`); every sample and their median. */
  repeat<T extends Sample>(run: (round: number) => Promise<T> | T, rounds?: number): Promise<SampleSet<T>>;
  /** Run `a` and `b` alternately, A B A B, `rounds` times each (default `config.rounds`); samples and medians. */
  interleave<A extends Sample, B extends Sample>(
    a: (round: number) => Promise<A> | A,
    b: (round: number) => Promise<B> | B,
    rounds?: number,
  ): Promise<Interleaved<A, B>>;
  /** Record one row of this benchmark's table and of `bench/results/latest.json`. */
  report(metric: string, value: number, unit: string, options?: ReportOptions): ReportRow;
  /** Run `cleanup` when the benchmark ends, whether it passed or failed (last registered runs first). */
  defer(cleanup: () => Promise<void> | void): void;
}

/** A benchmark, exported as `benchmark` (or in an array `benchmarks`) from a `bench/*.bench.ts` file. */
export interface Benchmark {
  /** Short name, matched by the command-line filter (`npm run bench -- queue`). */
  readonly name: string;
  /** One line on what it measures. */
  readonly description?: string;
  /** Calibration figures its ratios need (default: all); the run measures the union over selected benchmarks. */
  readonly calibration?: readonly CalibrationFigure[];
  run(ctx: BenchContext): Promise<void> | void;
}

/** Identity function that types a benchmark definition. */
export function defineBenchmark(benchmark: Benchmark): Benchmark {
  return benchmark;
}

/** Whether `value` looks like a {@link Benchmark}. */
export function isBenchmark(value: unknown): value is Benchmark {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Benchmark).name === 'string' &&
    typeof (value as Benchmark).run === 'function'
  );
}

/** How one benchmark went. */
export interface BenchmarkOutcome {
  readonly name: string;
  readonly status: 'ok' | 'failed';
  readonly error?: string;
  readonly durationMs: number;
  readonly rows: readonly ReportRow[];
}

/** Where {@link runBenchmark} prints. */
export interface RunOutput {
  /** Tables (stdout). */
  readonly out: (text: string) => void;
  /** Progress (stderr). */
  readonly log: (line: string) => void;
}

/** Process streams: tables to stdout, progress to stderr. */
export const processOutput: RunOutput = {
  out: (text) => process.stdout.write(`${text}\n`),
  log: (line) => process.stderr.write(`${line}\n`),
};

/** A logger that prefixes lines with the seconds since `since` and a tag. */
export function createLogger(
  tag: string,
  log: (line: string) => void,
  since = performance.now(),
): BenchLogger {
  const line = (level: string, message: string): void => {
    const seconds = ((performance.now() - since) / 1_000).toFixed(1).padStart(6);
    log(`[${seconds}s ${tag}]${level} ${message}`);
  };
  return { info: (message) => line('', message), warn: (message) => line(' WARNING', message) };
}

/**
 * Build a report row, with the ratio to `options.ratioTo` when that figure was measured.
 *
 * @throws Error when the value's unit and the calibration figure's unit are of different kinds
 */
export function makeReportRow(
  calibration: CalibrationResults,
  metric: string,
  value: number,
  unit: string,
  options: ReportOptions = {},
): ReportRow {
  const { ratioTo, note } = options;
  const reference = ratioTo === undefined ? undefined : calibrationValue(calibration, ratioTo);
  return {
    metric,
    value,
    unit,
    ...(ratioTo === undefined ? {} : { ratioTo }),
    ...(reference === undefined ? {} : { ratio: ratioBetween(value, unit, reference.value, reference.unit) }),
    ...(note === undefined ? {} : { note }),
  };
}

/** Shared inputs of every benchmark in a run. */
export interface RunShared {
  readonly config: BenchConfig;
  readonly calibration: CalibrationResults;
  readonly output?: RunOutput;
  /** Start of the run, for log timestamps (`performance.now()`). */
  readonly startedAt?: number;
}

/** Run one benchmark, print its table, and return its rows; a throwing benchmark is reported as failed. */
export async function runBenchmark(benchmark: Benchmark, shared: RunShared): Promise<BenchmarkOutcome> {
  const output = shared.output ?? processOutput;
  const log = createLogger(benchmark.name, output.log, shared.startedAt);
  const rows: ReportRow[] = [];
  const cleanups: (() => Promise<void> | void)[] = [];
  const { config, calibration } = shared;
  const ctx: BenchContext = {
    name: benchmark.name,
    config,
    calibration,
    log,
    figure(key) {
      const found = calibrationValue(calibration, key);
      if (!found) throw new Error(`calibration figure ${key} was not measured in this run`);
      return found;
    },
    scaled: (full, quick) => (config.quick ? (quick ?? Math.max(1, Math.round(full / 10))) : full),
    histogram: createHistogram,
    repeat: (run, rounds = config.rounds) => repeatRuns(run, rounds),
    interleave: (a, b, rounds = config.rounds) => interleaveRuns(a, b, rounds),
    report(metric, value, unit, options) {
      const row = makeReportRow(calibration, metric, value, unit, options);
      if (options?.ratioTo !== undefined && row.ratio === undefined) {
        log.warn(`${metric}: no ratio, ${options.ratioTo} was not measured in this run`);
      }
      rows.push(row);
      return row;
    },
    defer(cleanup) {
      cleanups.push(cleanup);
    },
  };

  const started = performance.now();
  let error: string | undefined;
  log.info(benchmark.description ?? 'start');
  try {
    await benchmark.run(ctx);
  } catch (thrown) {
    error = thrown instanceof Error ? (thrown.stack ?? thrown.message) : String(thrown);
  }
  for (const cleanup of cleanups.reverse()) {
    try {
      await cleanup();
    } catch (thrown) {
      const message = thrown instanceof Error ? thrown.message : String(thrown);
      log.warn(`cleanup failed: ${message}`);
      error ??= `cleanup failed: ${message}`;
    }
  }
  const durationMs = Math.round(performance.now() - started);
  output.out(`\n== ${benchmark.name} ==${error ? ' FAILED' : ''}`);
  if (rows.length > 0) output.out(formatReportTable(rows));
  if (error) output.out(error);
  return {
    name: benchmark.name,
    status: error ? 'failed' : 'ok',
    ...(error ? { error } : {}),
    durationMs,
    rows,
  };
}

/** Machine facts recorded with every run. */
export interface HostInfo {
  readonly hostname: string;
  readonly platform: string;
  readonly arch: string;
  readonly cpus: number;
  readonly cpuModel: string;
  readonly memoryMb: number;
  readonly node: string;
  /** 1, 5 and 15 minute load averages when the run started. */
  readonly loadavg: readonly number[];
}

/** Facts about this machine. */
export function hostInfo(): HostInfo {
  const cpuList = cpus();
  return {
    hostname: hostname(),
    platform: platform(),
    arch: arch(),
    cpus: cpuList.length,
    cpuModel: cpuList[0]?.model ?? 'unknown',
    memoryMb: Math.round(totalmem() / 2 ** 20),
    node: process.version,
    loadavg: loadavg().map((load) => Math.round(load * 100) / 100),
  };
}

/** Everything written to `bench/results/latest.json`. */
export interface RunSummary {
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly quick: boolean;
  /** Command-line filters, empty for all benchmarks. */
  readonly filters: readonly string[];
  readonly host: HostInfo;
  readonly config: BenchConfig;
  readonly calibration: CalibrationResults;
  readonly benchmarks: readonly BenchmarkOutcome[];
}

/** Write `summary` as indented JSON to `path`, creating its folder. NaN and infinities become null. */
export async function writeSummary(path: string, summary: RunSummary): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, `${JSON.stringify(summary, null, 2)}\n`);
}

/** Command line of `npm run bench -- [filters…] [--quick] [--list]`. */
export interface BenchArgs {
  /** Positional words; a benchmark runs when its name or file contains any of them (case-insensitive). */
  readonly filters: readonly string[];
  /** `--quick`: as `BENCH_QUICK=1`. */
  readonly quick: boolean;
  /** `--list`: print the benchmarks and exit. */
  readonly list: boolean;
  /** `--help` or `-h`. */
  readonly help: boolean;
}

/**
 * Parse the command line (without `node` and the script).
 *
 * @throws Error on an unknown option
 */
export function parseBenchArgs(argv: readonly string[]): BenchArgs {
  const filters: string[] = [];
  let quick = false;
  let list = false;
  let help = false;
  for (const arg of argv) {
    if (arg === '--quick') quick = true;
    else if (arg === '--list') list = true;
    else if (arg === '--help' || arg === '-h') help = true;
    else if (arg.startsWith('-')) throw new Error(`unknown option ${arg} (try --help)`);
    else filters.push(arg);
  }
  return { filters, quick, list, help };
}

/** A benchmark and the file it came from. */
export interface LoadedBenchmark {
  readonly benchmark: Benchmark;
  /** File name, e.g. `queue.bench.ts`. */
  readonly file: string;
}

/** The benchmarks whose name or file name contains any filter (all of them when there is no filter). */
export function selectBenchmarks(
  loaded: readonly LoadedBenchmark[],
  filters: readonly string[],
): LoadedBenchmark[] {
  if (filters.length === 0) return [...loaded];
  const wanted = filters.map((filter) => filter.toLowerCase());
  return loaded.filter(({ benchmark, file }) =>
    wanted.some(
      (filter) => benchmark.name.toLowerCase().includes(filter) || file.toLowerCase().includes(filter),
    ),
  );
}

/** Union of the calibration figures the benchmarks need, in measuring order (all for a benchmark that says none). */
export function calibrationFiguresFor(
  benchmarks: readonly Benchmark[],
  all: readonly CalibrationFigure[],
): CalibrationFigure[] {
  const needed = new Set<CalibrationFigure>();
  for (const benchmark of benchmarks) for (const figure of benchmark.calibration ?? all) needed.add(figure);
  return all.filter((figure) => needed.has(figure));
}
