/**
 * Entry point of `npm run bench -- [filters…] [--quick] [--list]`: measures the calibration figures the selected
 * benchmarks need, runs every selected `bench/*.bench.ts`, prints one table per benchmark and writes
 * `bench/results/latest.json`. Exits with 1 when a benchmark or a calibration figure failed.
 *
 * @packageDocumentation
 */
import { readdir } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CALIBRATION_FIGURES, measureCalibration } from './lib/calibration';
import { runInterruptCleanups } from './lib/cleanup';
import { readBenchConfig } from './lib/config';
import {
  type BenchmarkOutcome,
  calibrationFiguresFor,
  createLogger,
  hostInfo,
  isBenchmark,
  type LoadedBenchmark,
  parseBenchArgs,
  processOutput,
  runBenchmark,
  selectBenchmarks,
  writeSummary,
} from './lib/runner';

const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));
const RESULTS_FILE = fileURLToPath(new URL('./results/latest.json', import.meta.url));

const HELP = `Usage: npm run bench -- [filter…] [--quick] [--list]

  filter   run only benchmarks whose name or file contains one of these words
  --quick  everything ~10x smaller and shorter (same as BENCH_QUICK=1), to smoke-test the harness
  --list   list the benchmarks and exit

Sizes: BENCH_PG_SCALE, BENCH_PG_SECONDS, BENCH_ZADD_REQUESTS, BENCH_ZADD_CLIENTS, BENCH_REDIS_DB,
BENCH_RTT_ROUNDTRIPS, BENCH_FAN_CLIENTS, BENCH_FAN_SECONDS, BENCH_ROUNDS (see bench/README.md).`;

async function loadBenchmarks(): Promise<LoadedBenchmark[]> {
  const files = (await readdir(BENCH_DIR)).filter((file) => file.endsWith('.bench.ts')).sort();
  const loaded: LoadedBenchmark[] = [];
  for (const file of files) {
    const module = (await import(pathToFileURL(`${BENCH_DIR}${file}`).href)) as Record<string, unknown>;
    const found = [module.benchmark, ...(Array.isArray(module.benchmarks) ? module.benchmarks : [])].filter(
      (value) => value !== undefined,
    );
    if (found.length === 0 || !found.every(isBenchmark)) {
      throw new Error(
        `bench/${file} must export \`benchmark\` or \`benchmarks\` made with defineBenchmark()`,
      );
    }
    for (const benchmark of found) loaded.push({ benchmark, file });
  }
  return loaded;
}

async function main(): Promise<number> {
  const args = parseBenchArgs(process.argv.slice(2));
  if (args.help) {
    processOutput.out(HELP);
    return 0;
  }
  const all = await loadBenchmarks();
  if (args.list) {
    for (const { benchmark, file } of all)
      processOutput.out(`${benchmark.name}\t${file}\t${benchmark.description ?? ''}`);
    return 0;
  }
  const selected = selectBenchmarks(all, args.filters);
  if (selected.length === 0) {
    processOutput.log(
      `No benchmark matches ${args.filters.join(', ')}. Available: ${all.map((l) => l.benchmark.name).join(', ')}`,
    );
    return 1;
  }

  const config = readBenchConfig(process.env, args.quick ? { quick: true } : {});
  const startedAt = new Date();
  const t0 = performance.now();
  const log = createLogger('calibration', processOutput.log, t0);
  const host = hostInfo();
  log.info(
    `${config.quick ? 'QUICK mode (figures only good for checking the harness); ' : ''}` +
      `${host.cpus} CPUs, load ${host.loadavg.join(' ')}, node ${host.node}; ` +
      `benchmarks: ${selected.map((l) => l.benchmark.name).join(', ')}`,
  );
  const figures = calibrationFiguresFor(
    selected.map((l) => l.benchmark),
    CALIBRATION_FIGURES,
  );
  const calibration = await measureCalibration(config, figures, (message) => log.info(message));

  const outcomes: BenchmarkOutcome[] = [];
  for (const { benchmark } of selected) {
    outcomes.push(await runBenchmark(benchmark, { config, calibration, startedAt: t0 }));
  }

  await writeSummary(RESULTS_FILE, {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    quick: config.quick,
    filters: args.filters,
    host,
    config,
    calibration,
    benchmarks: outcomes,
  });
  const failedFigures = Object.keys(calibration.errors);
  const failed = outcomes.filter((outcome) => outcome.status === 'failed').map((outcome) => outcome.name);
  processOutput.out(
    `\nWrote ${RESULTS_FILE} (${((performance.now() - t0) / 1_000).toFixed(1)} s).` +
      (failedFigures.length > 0 ? ` Calibration failed: ${failedFigures.join(', ')}.` : '') +
      (failed.length > 0 ? ` Benchmarks failed: ${failed.join(', ')}.` : ''),
  );
  return failedFigures.length > 0 || failed.length > 0 ? 1 : 0;
}

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    processOutput.log(`\n${signal}: cleaning up (databases, Redis keys, child processes)…`);
    void runInterruptCleanups().finally(() => process.exit(130));
  });
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    processOutput.log(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exitCode = 1;
  },
);
