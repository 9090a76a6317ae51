/**
 * Parsers of the text that `pgbench` and `redis-benchmark` print. Pure functions, unit-tested on captured output.
 *
 * @packageDocumentation
 */

/** What {@link parsePgbenchOutput} reads from the report of a `pgbench` run. */
export interface PgbenchReport {
  /** `tps = …` (the figure pgbench gives "without initial connection time"). */
  readonly tps: number;
  /** `number of transactions actually processed`. */
  readonly transactions: number;
  /** `number of failed transactions` (0 when the line is missing, as in pgbench before 15). */
  readonly failed: number;
  /** `latency average = … ms`, when printed. */
  readonly latencyAverageMs: number | undefined;
  /** `number of clients`. */
  readonly clients: number | undefined;
  /** `number of threads`. */
  readonly threads: number | undefined;
  /** `scaling factor`. */
  readonly scale: number | undefined;
}

function matchNumber(text: string, pattern: RegExp): number | undefined {
  const found = pattern.exec(text);
  if (!found?.[1]) return undefined;
  const value = Number(found[1]);
  return Number.isFinite(value) ? value : undefined;
}

/**
 * Read the report that `pgbench` prints at the end of a run.
 *
 * @throws Error when the output has no `tps = …` line (pgbench failed or printed something else)
 */
export function parsePgbenchOutput(output: string): PgbenchReport {
  // pgbench < 14 prints two tps lines ("including" / "excluding connections establishing"); prefer "excluding".
  const tps =
    matchNumber(output, /^tps = ([\d.]+) \((?:without initial connection time|excluding[^)]*)\)/m) ??
    matchNumber(output, /^tps = ([\d.]+)/m);
  if (tps === undefined) {
    throw new Error(`pgbench printed no "tps = …" line:\n${output.trim().slice(-2000)}`);
  }
  return {
    tps,
    transactions: matchNumber(output, /^number of transactions actually processed: (\d+)/m) ?? 0,
    failed: matchNumber(output, /^number of failed transactions: (\d+)/m) ?? 0,
    latencyAverageMs: matchNumber(output, /^latency average = ([\d.]+) ms/m),
    clients: matchNumber(output, /^number of clients: (\d+)/m),
    threads: matchNumber(output, /^number of threads: (\d+)/m),
    scale: matchNumber(output, /^scaling factor: (\d+)/m),
  };
}

/** What {@link parseRedisBenchmarkOutput} reads for one test of a `redis-benchmark` run. */
export interface RedisBenchmarkReport {
  /** Test name as printed, upper case (`ZADD`). */
  readonly test: string;
  /** Requests per second. */
  readonly rps: number;
  /** Median latency in milliseconds, when printed. */
  readonly p50Ms: number | undefined;
  /** 99th percentile latency in milliseconds, when printed (`--csv` and the full report). */
  readonly p99Ms: number | undefined;
}

function splitCsvLine(line: string): string[] {
  return line.split(',').map((cell) => cell.trim().replace(/^"(.*)"$/, '$1'));
}

function parseCsv(output: string): RedisBenchmarkReport[] {
  const lines = output
    .split(/\r?\n|\r/)
    .map((line) => line.trim())
    .filter((line) => line.startsWith('"'));
  const header = lines[0] === undefined ? [] : splitCsvLine(lines[0]);
  const column = (name: string): number => header.indexOf(name);
  if (column('test') < 0 || column('rps') < 0) return [];
  const reports: RedisBenchmarkReport[] = [];
  for (const line of lines.slice(1)) {
    const cells = splitCsvLine(line);
    const num = (name: string): number | undefined => {
      const cell = cells[column(name)];
      const value = cell === undefined ? Number.NaN : Number(cell);
      return Number.isFinite(value) ? value : undefined;
    };
    const rps = num('rps');
    const test = cells[column('test')];
    if (rps !== undefined && test) {
      reports.push({
        test: test.toUpperCase(),
        rps,
        p50Ms: num('p50_latency_ms'),
        p99Ms: num('p99_latency_ms'),
      });
    }
  }
  return reports;
}

function parseQuiet(output: string): RedisBenchmarkReport[] {
  // Progress lines end in \r; the final one per test is "ZADD: 91324.20 requests per second, p50=0.271 msec".
  const reports: RedisBenchmarkReport[] = [];
  for (const segment of output.split(/\r?\n|\r/)) {
    const found = /^\s*([^:\r\n]+?): ([\d.]+) requests per second(?:, p50=([\d.]+) msec)?/.exec(segment);
    if (found?.[1] && found[2]) {
      reports.push({
        test: found[1].toUpperCase(),
        rps: Number(found[2]),
        p50Ms: found[3] === undefined ? undefined : Number(found[3]),
        p99Ms: undefined,
      });
    }
  }
  return reports;
}

function parseFull(output: string): RedisBenchmarkReport[] {
  // "====== ZADD ======" … "throughput summary: 93457.95 requests per second" … latency summary table.
  const reports: RedisBenchmarkReport[] = [];
  const sections = output.split(/^.*?====== (.+?) ======\s*$/m);
  for (let i = 1; i + 1 < sections.length; i += 2) {
    const test = sections[i]?.trim() ?? '';
    const body = sections[i + 1] ?? '';
    const rps = matchNumber(body, /throughput summary: ([\d.]+) requests per second/);
    if (rps === undefined) continue;
    const summary = /latency summary \(msec\):\s*\n\s*([a-z0-9 \t]+)\n\s*([\d. \t]+)/.exec(body);
    let p50Ms: number | undefined;
    let p99Ms: number | undefined;
    if (summary?.[1] && summary[2]) {
      const names = summary[1].trim().split(/\s+/);
      const values = summary[2].trim().split(/\s+/).map(Number);
      const pick = (name: string): number | undefined => {
        const value = values[names.indexOf(name)];
        return value !== undefined && Number.isFinite(value) ? value : undefined;
      };
      p50Ms = pick('p50');
      p99Ms = pick('p99');
    }
    reports.push({ test: test.toUpperCase(), rps, p50Ms, p99Ms });
  }
  return reports;
}

/**
 * Read every test's throughput from `redis-benchmark` output in any of its three formats: `--csv`, `-q`, or the
 * full report of redis-benchmark 6+.
 *
 * @throws Error when no test result can be found
 */
export function parseRedisBenchmarkOutput(output: string): RedisBenchmarkReport[] {
  for (const parse of [parseCsv, parseFull, parseQuiet]) {
    const reports = parse(output);
    if (reports.length > 0) return reports;
  }
  throw new Error(`redis-benchmark printed no result:\n${output.trim().slice(-2000)}`);
}
