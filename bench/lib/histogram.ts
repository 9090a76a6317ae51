/**
 * Latency histograms for benchmarks: HdrHistogram (`hdr-histogram-js`, pure-JS mode, no WebAssembly), values
 * recorded in nanoseconds and read back in any time unit.
 *
 * @packageDocumentation
 */
import { build, type Histogram } from 'hdr-histogram-js';

/** Time units a {@link LatencyHistogram} reads back in. */
export type TimeUnit = 'ns' | 'us' | 'ms' | 's';

const NS_PER: Readonly<Record<TimeUnit, number>> = { ns: 1, us: 1e3, ms: 1e6, s: 1e9 };

/** Percentiles and extremes of a {@link LatencyHistogram}, in one time unit. */
export interface LatencySummary {
  /** Unit of every other field but `count`. */
  readonly unit: TimeUnit;
  /** Number of recorded values. */
  readonly count: number;
  readonly min: number;
  readonly mean: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
}

/** An HDR histogram of durations (3 significant digits, up to an hour, auto-resizing). */
export interface LatencyHistogram {
  /** Number of recorded values. */
  readonly count: number;
  /** Record one duration given in nanoseconds (e.g. a difference of `process.hrtime.bigint()`). */
  recordNs(ns: number | bigint): void;
  /** Record one duration given in milliseconds (e.g. a difference of `performance.now()`). */
  recordMs(ms: number): void;
  /** Value at `percentile` (0-100) in `unit`. */
  percentile(percentile: number, unit?: TimeUnit): number;
  /** Percentiles and extremes in `unit` (default `us`). */
  summary(unit?: TimeUnit): LatencySummary;
  /** Add every value of `other` to this histogram. */
  add(other: LatencyHistogram): void;
  /** Forget every value. */
  reset(): void;
}

class HdrLatencyHistogram implements LatencyHistogram {
  readonly #hdr: Histogram;

  constructor() {
    this.#hdr = build({
      useWebAssembly: false,
      bitBucketSize: 32,
      autoResize: true,
      lowestDiscernibleValue: 1,
      highestTrackableValue: 3_600 * 1e9,
      numberOfSignificantValueDigits: 3,
    });
  }

  get count(): number {
    return this.#hdr.totalCount;
  }

  /** The underlying histogram, for {@link HdrLatencyHistogram.add}. */
  get hdr(): Histogram {
    return this.#hdr;
  }

  recordNs(ns: number | bigint): void {
    const value = Math.max(0, Math.round(Number(ns)));
    this.#hdr.recordValue(value);
  }

  recordMs(ms: number): void {
    this.recordNs(ms * NS_PER.ms);
  }

  percentile(percentile: number, unit: TimeUnit = 'us'): number {
    if (this.#hdr.totalCount === 0) return Number.NaN;
    return this.#hdr.getValueAtPercentile(percentile) / NS_PER[unit];
  }

  summary(unit: TimeUnit = 'us'): LatencySummary {
    const empty = this.#hdr.totalCount === 0;
    const scale = (ns: number): number => (empty ? Number.NaN : ns / NS_PER[unit]);
    return {
      unit,
      count: this.#hdr.totalCount,
      min: scale(this.#hdr.minNonZeroValue),
      mean: scale(this.#hdr.mean),
      p50: this.percentile(50, unit),
      p90: this.percentile(90, unit),
      p99: this.percentile(99, unit),
      p999: this.percentile(99.9, unit),
      max: scale(this.#hdr.maxValue),
    };
  }

  add(other: LatencyHistogram): void {
    if (!(other instanceof HdrLatencyHistogram))
      throw new TypeError('can only add a histogram of createHistogram()');
    this.#hdr.add(other.hdr);
  }

  reset(): void {
    this.#hdr.reset();
  }
}

/** A new, empty {@link LatencyHistogram}. */
export function createHistogram(): LatencyHistogram {
  return new HdrLatencyHistogram();
}

/** Convert `value` from one time unit to another. */
export function convertTime(value: number, from: TimeUnit, to: TimeUnit): number {
  return (value * NS_PER[from]) / NS_PER[to];
}
