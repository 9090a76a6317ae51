import { describe, expect, it } from 'vitest';
import { type CalibrationResults, calibrationValue } from '../../bench/lib/calibration';
import { readBenchConfig } from '../../bench/lib/config';
import { convertTime, createHistogram } from '../../bench/lib/histogram';
import { parsePgbenchOutput, parseRedisBenchmarkOutput } from '../../bench/lib/parsers';
import {
  type Benchmark,
  calibrationFiguresFor,
  defineBenchmark,
  makeReportRow,
  parseBenchArgs,
  runBenchmark,
  selectBenchmarks,
} from '../../bench/lib/runner';
import { interleaveRuns, median, medianOf, repeatRuns } from '../../bench/lib/stats';
import { formatNumber, formatRatio, formatReportTable, formatTable } from '../../bench/lib/table';
import { ratioBetween, unitKind } from '../../bench/lib/units';

const PGBENCH_15 = `pgbench (15.20 (Debian 15.20-0+deb12u1))
transaction type: <builtin: TPC-B (sort of)>
scaling factor: 10
query mode: simple
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 20 s
number of transactions actually processed: 30695
number of failed transactions: 0 (0.000%)
latency average = 5.211 ms
initial connection time = 11.769 ms
tps = 1535.154654 (without initial connection time)
`;

const PGBENCH_13 = `starting vacuum...end.
transaction type: <builtin: select only>
scaling factor: 10
query mode: simple
number of clients: 4
number of threads: 2
duration: 20 s
number of transactions actually processed: 160000
latency average = 0.500 ms
tps = 7990.000000 (including connections establishing)
tps = 8012.500000 (excluding connections establishing)
`;

const REDIS_CSV = `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"ZADD","90090.09","0.298","0.096","0.287","0.423","0.495","0.823"
`;

const REDIS_QUIET =
  'ZADD: rps=0.0 (overall: -nan) avg_msec=-nan (overall: -nan)\r                    \r' +
  'ZADD: 91324.20 requests per second, p50=0.271 msec\n\n';

const REDIS_FULL = `ZADD: rps=0.0 (overall: 0.0) avg_msec=-nan (overall: -nan)\r                 \r====== ZADD ======
  20000 requests completed in 0.21 seconds
  50 parallel clients
  3 bytes payload

Latency by percentile distribution:
0.000% <= 0.063 milliseconds (cumulative count 1)
100.000% <= 2.959 milliseconds (cumulative count 20000)

Summary:
  throughput summary: 93457.95 requests per second
  latency summary (msec):
          avg       min       p50       p95       p99       max
        0.298     0.056     0.271     0.439     0.687     2.959
`;

const CALIBRATION: CalibrationResults = {
  tpcb: {
    figure: 'C_tpcb',
    tps: 1_500,
    transactions: 30_000,
    failed: 0,
    latencyAverageMs: 5,
    clients: 8,
    threads: 2,
    seconds: 20,
    scale: 10,
    command: 'pgbench -c 8 -j 2 -T 20 db',
  },
  rtt: {
    figure: 'C_rtt',
    roundTrips: 30_000,
    p50Us: 80,
    p99Us: 4_000,
    p999Us: 6_000,
    maxUs: 9_000,
    meanUs: 120,
  },
  errors: {},
  durationsMs: {},
};

describe('table formatting', () => {
  it('formats numbers by magnitude', () => {
    expect(formatNumber(1_523.4)).toBe('1,523');
    expect(formatNumber(29_000)).toBe('29,000');
    expect(formatNumber(97.66)).toBe('97.7');
    expect(formatNumber(8.184)).toBe('8.18');
    expect(formatNumber(0.1444)).toBe('0.144');
    expect(formatNumber(0)).toBe('0');
    expect(formatNumber(Number.NaN)).toBe('-');
  });

  it('formats ratios with 3 significant digits', () => {
    expect(formatRatio(0.65234)).toBe('0.652x');
    expect(formatRatio(37.71)).toBe('37.7x');
    expect(formatRatio(1)).toBe('1x');
    expect(formatRatio(12_345.6)).toBe('12,346x');
    expect(formatRatio(Number.POSITIVE_INFINITY)).toBe('-');
  });

  it('aligns columns, right-aligning where asked, and trims trailing spaces', () => {
    const table = formatTable(
      ['metric', 'value', 'unit'],
      [
        ['C_tpcb', '1,523', 'tps'],
        ['C_rtt_p50', '97.7', 'us'],
      ],
      ['left', 'right', 'left'],
    );
    expect(table.split('\n')).toEqual([
      'metric     value  unit',
      '---------  -----  ----',
      'C_tpcb     1,523  tps',
      'C_rtt_p50   97.7  us',
    ]);
  });

  it('prints the ratio column with the figure name and adds a note column only when a row has a note', () => {
    const rows = [
      { metric: 'matches/s', value: 412.5, unit: 'matches/s', ratioTo: 'C_tpcb', ratio: 0.275 },
      { metric: 'p99', value: 12.25, unit: 'ms' },
    ];
    const lines = formatReportTable(rows).split('\n');
    expect(lines[0]).toBe('metric     value  unit       ratio to calibration');
    expect(lines[2]).toBe('matches/s  412.5  matches/s  0.275x C_tpcb');
    expect(lines[3]).toBe('p99         12.3  ms');
    const withNote = formatReportTable([{ ...rows[1]!, note: 'median of 5' }]);
    expect(withNote.split('\n')[0]).toMatch(/ratio to calibration {2}note$/);
    expect(withNote).toContain('median of 5');
  });
});

describe('medians and interleaving', () => {
  it('takes the median of odd and even counts, NaN when empty, without reordering the input', () => {
    const values = [5, 1, 3];
    expect(median(values)).toBe(3);
    expect(values).toEqual([5, 1, 3]);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  it('takes medians key by key for record samples', () => {
    expect(
      medianOf([
        { rate: 10, p99: 5 },
        { rate: 30, p99: 1 },
        { rate: 20, p99: 3 },
      ]),
    ).toEqual({ rate: 20, p99: 3 });
    expect(medianOf([7, 9, 8])).toBe(8);
  });

  it('runs A B A B, passing the round, and returns per-side samples and medians', async () => {
    const calls: string[] = [];
    const result = await interleaveRuns(
      (round) => {
        calls.push(`a${round}`);
        return [10, 30, 20][round]!;
      },
      async (round) => {
        calls.push(`b${round}`);
        return { rate: [1, 3, 2][round]!, p99: 7 };
      },
      3,
    );
    expect(calls).toEqual(['a0', 'b0', 'a1', 'b1', 'a2', 'b2']);
    expect(result.rounds).toBe(3);
    expect(result.a.samples).toEqual([10, 30, 20]);
    expect(result.a.median).toBe(20);
    expect(result.b.median).toEqual({ rate: 2, p99: 7 });
  });

  it('repeats sequentially and rejects a non-positive round count', async () => {
    const seen: number[] = [];
    const result = await repeatRuns((round) => {
      seen.push(round);
      return round * 2;
    }, 4);
    expect(seen).toEqual([0, 1, 2, 3]);
    expect(result.median).toBe(3);
    await expect(repeatRuns(() => 1, 0)).rejects.toThrow(RangeError);
    await expect(
      interleaveRuns(
        () => 1,
        () => 1,
        1.5,
      ),
    ).rejects.toThrow(RangeError);
  });
});

describe('pgbench output parser', () => {
  it('reads pgbench 15 output', () => {
    expect(parsePgbenchOutput(PGBENCH_15)).toEqual({
      tps: 1535.154654,
      transactions: 30695,
      failed: 0,
      latencyAverageMs: 5.211,
      clients: 8,
      threads: 2,
      scale: 10,
    });
  });

  it('prefers the "excluding connections" tps line of older pgbench', () => {
    const report = parsePgbenchOutput(PGBENCH_13);
    expect(report.tps).toBe(8012.5);
    expect(report.failed).toBe(0);
    expect(report.clients).toBe(4);
  });

  it('throws with the output when there is no tps line', () => {
    expect(() => parsePgbenchOutput('pgbench: error: connection to server failed')).toThrow(
      /no "tps = …" line[\s\S]*connection to server failed/,
    );
  });
});

describe('redis-benchmark output parser', () => {
  it('reads --csv output', () => {
    expect(parseRedisBenchmarkOutput(REDIS_CSV)).toEqual([
      { test: 'ZADD', rps: 90090.09, p50Ms: 0.287, p99Ms: 0.495 },
    ]);
  });

  it('reads -q output with carriage-return progress lines', () => {
    expect(parseRedisBenchmarkOutput(REDIS_QUIET)).toEqual([
      { test: 'ZADD', rps: 91324.2, p50Ms: 0.271, p99Ms: undefined },
    ]);
  });

  it('reads the full report', () => {
    expect(parseRedisBenchmarkOutput(REDIS_FULL)).toEqual([
      { test: 'ZADD', rps: 93457.95, p50Ms: 0.271, p99Ms: 0.687 },
    ]);
  });

  it('throws when nothing can be read', () => {
    expect(() => parseRedisBenchmarkOutput('Could not connect to Redis at 127.0.0.1:6379')).toThrow(
      /no result[\s\S]*Could not connect/,
    );
  });
});

describe('units and ratios to calibration', () => {
  it('classifies units', () => {
    expect(unitKind('ms')).toBe('time');
    expect(unitKind('us')).toBe('time');
    expect(unitKind('tps')).toBe('rate');
    expect(unitKind('matches/s')).toBe('rate');
    expect(unitKind('deliveries/match')).toBe('other');
  });

  it('converts time units before dividing, and divides rates as they are', () => {
    expect(ratioBetween(4, 'ms', 80, 'us')).toBeCloseTo(50);
    expect(ratioBetween(300, 'matches/s', 1_500, 'tps')).toBeCloseTo(0.2);
    expect(convertTime(1.5, 'ms', 'us')).toBe(1_500);
  });

  it('refuses a ratio between a duration and a rate', () => {
    expect(() => ratioBetween(4, 'ms', 1_500, 'tps')).toThrow(
      /cannot express ms as a ratio to a figure in tps/,
    );
  });

  it('builds report rows with the ratio to a measured figure, and without one for a missing figure', () => {
    const row = makeReportRow(CALIBRATION, 'latency p50', 2, 'ms', { ratioTo: 'C_rtt_p50' });
    expect(row).toMatchObject({ metric: 'latency p50', value: 2, unit: 'ms', ratioTo: 'C_rtt_p50' });
    expect(row.ratio).toBeCloseTo(25);
    expect(
      makeReportRow(CALIBRATION, 'claims/s', 750, 'claims/s', { ratioTo: 'C_tpcb', note: 'x' }).ratio,
    ).toBe(0.5);
    const missing = makeReportRow(CALIBRATION, 'zadds', 1, 'rps', { ratioTo: 'C_zadd' });
    expect(missing.ratio).toBeUndefined();
    expect(calibrationValue(CALIBRATION, 'C_rtt_p99')).toEqual({ value: 4_000, unit: 'us' });
    expect(calibrationValue(CALIBRATION, 'C_fan')).toBeUndefined();
  });
});

describe('configuration and command line', () => {
  it('uses the full sizes of docs/benchmarks.md by default and ~10x less under BENCH_QUICK', () => {
    const full = readBenchConfig({});
    expect(full.quick).toBe(false);
    expect(full.pg).toMatchObject({ scale: 10, seconds: 20 });
    expect(full.redis).toMatchObject({ requests: 300_000, clients: 50, db: 15 });
    expect(full.ws).toMatchObject({ roundTrips: 30_000, fanClients: 1_000, server: 'child' });
    const quick = readBenchConfig({ BENCH_QUICK: '1' });
    expect(quick.quick).toBe(true);
    expect(quick.pg.seconds).toBe(2);
    expect(quick.ws.roundTrips).toBe(3_000);
    expect(readBenchConfig({ BENCH_QUICK: '1' }, { quick: false }).quick).toBe(false);
  });

  it('reads overrides and rejects invalid values', () => {
    const config = readBenchConfig({
      BENCH_PG_SECONDS: '5',
      BENCH_FAN_SECONDS: '1.5',
      BENCH_RTT_ROUNDTRIPS: '10_000',
    });
    expect(config.pg.seconds).toBe(5);
    expect(config.ws.fanSeconds).toBe(1.5);
    expect(config.ws.roundTrips).toBe(10_000);
    expect(() => readBenchConfig({ BENCH_PG_SECONDS: '1.5' })).toThrow(/BENCH_PG_SECONDS=1.5/);
    expect(() => readBenchConfig({ BENCH_ROUNDS: '0' })).toThrow(/BENCH_ROUNDS/);
    expect(() => readBenchConfig({ BENCH_WS_SERVER: 'docker' })).toThrow(/BENCH_WS_SERVER/);
  });

  it('parses filters and flags', () => {
    expect(parseBenchArgs(['queue', '--quick', 'presence'])).toEqual({
      filters: ['queue', 'presence'],
      quick: true,
      list: false,
      help: false,
    });
    expect(() => parseBenchArgs(['--fast'])).toThrow(/unknown option --fast/);
  });

  it('selects benchmarks by name or file, case-insensitively, and unions their calibration figures', () => {
    const make = (name: string, calibration?: Benchmark['calibration']): Benchmark =>
      defineBenchmark({ name, run: () => {}, ...(calibration ? { calibration } : {}) });
    const loaded = [
      { benchmark: make('queue-claims', ['C_tpcb']), file: 'queue.bench.ts' },
      { benchmark: make('presence', ['C_fan', 'C_rtt']), file: 'presence.bench.ts' },
      { benchmark: make('calibration'), file: 'calibration.bench.ts' },
    ];
    expect(selectBenchmarks(loaded, ['QUEUE']).map((l) => l.benchmark.name)).toEqual(['queue-claims']);
    expect(selectBenchmarks(loaded, ['presence.bench']).map((l) => l.benchmark.name)).toEqual(['presence']);
    expect(selectBenchmarks(loaded, [])).toHaveLength(3);
    expect(selectBenchmarks(loaded, ['nothing'])).toEqual([]);
    const all = ['C_tpcb', 'C_sel', 'C_zadd', 'C_rtt', 'C_fan'] as const;
    expect(calibrationFiguresFor([loaded[1]!.benchmark, loaded[0]!.benchmark], all)).toEqual([
      'C_tpcb',
      'C_rtt',
      'C_fan',
    ]);
    expect(calibrationFiguresFor([loaded[2]!.benchmark], all)).toEqual([...all]);
  });
});

describe('runBenchmark', () => {
  it('collects rows, runs deferred cleanups in reverse order, and prints a table', async () => {
    const printed: string[] = [];
    const order: string[] = [];
    const outcome = await runBenchmark(
      defineBenchmark({
        name: 'demo',
        async run(ctx) {
          ctx.defer(() => {
            order.push('first');
          });
          ctx.defer(() => {
            order.push('second');
          });
          const { a, b } = await ctx.interleave(
            () => 600,
            () => 900,
          );
          ctx.report('A claims/s', a.median, 'claims/s', { ratioTo: 'C_tpcb' });
          ctx.report('B claims/s', b.median, 'claims/s', { ratioTo: 'C_tpcb' });
          expect(ctx.scaled(30_000)).toBe(3_000);
          expect(ctx.figure('C_rtt_p50')).toEqual({ value: 80, unit: 'us' });
          expect(() => ctx.figure('C_zadd')).toThrow(/C_zadd was not measured/);
        },
      }),
      {
        config: readBenchConfig({ BENCH_QUICK: '1' }),
        calibration: CALIBRATION,
        output: { out: (text) => printed.push(text), log: () => {} },
      },
    );
    expect(outcome.status).toBe('ok');
    expect(order).toEqual(['second', 'first']);
    expect(outcome.rows.map((row) => row.ratio)).toEqual([0.4, 0.6]);
    expect(printed.join('\n')).toContain('B claims/s  900.0  claims/s  0.6x C_tpcb');
  });

  it('reports a throwing benchmark as failed and still runs its cleanups', async () => {
    let cleaned = false;
    const outcome = await runBenchmark(
      defineBenchmark({
        name: 'broken',
        run(ctx) {
          ctx.defer(() => {
            cleaned = true;
          });
          throw new Error('boom');
        },
      }),
      { config: readBenchConfig({}), calibration: CALIBRATION, output: { out: () => {}, log: () => {} } },
    );
    expect(outcome.status).toBe('failed');
    expect(outcome.error).toMatch(/boom/);
    expect(cleaned).toBe(true);
  });
});

describe('latency histogram', () => {
  it('reads percentiles back in any time unit within HDR precision', () => {
    const histogram = createHistogram();
    for (let us = 1; us <= 1_000; us++) histogram.recordNs(us * 1_000);
    histogram.recordMs(50);
    const summary = histogram.summary('us');
    expect(summary.count).toBe(1_001);
    expect(summary.p50).toBeCloseTo(501, -1);
    expect(summary.max).toBeCloseTo(50_000, -2);
    expect(histogram.percentile(99, 'ms')).toBeCloseTo(0.991, 2);
    histogram.reset();
    expect(histogram.count).toBe(0);
    expect(histogram.summary().p50).toBeNaN();
  });
});
