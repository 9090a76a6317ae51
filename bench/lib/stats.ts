/**
 * Medians of repeated and interleaved runs. Pure: the runs are given as functions, so the order in which they are
 * called can be unit-tested.
 *
 * @packageDocumentation
 */

/** What one run of a measured function returns: one figure, or several named figures. */
export type Sample = number | Readonly<Record<string, number>>;

/** The median of a {@link Sample} type: a number for numbers, the same keys for records. */
export type MedianOf<T extends Sample> = T extends number ? number : { readonly [K in keyof T]: number };

/** Every sample of one side and their median. */
export interface SampleSet<T extends Sample> {
  /** Samples in the order they were taken. */
  readonly samples: readonly T[];
  /** Median of the samples (per key for records). */
  readonly median: MedianOf<T>;
}

/** Result of {@link interleaveRuns}. */
export interface Interleaved<A extends Sample, B extends Sample> {
  readonly rounds: number;
  readonly a: SampleSet<A>;
  readonly b: SampleSet<B>;
}

/** Median of `values` (mean of the two middle values for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Median of samples: of the numbers, or key by key of the records (keys of the first sample; a key missing from
 * a later sample makes that key's median NaN).
 */
export function medianOf<T extends Sample>(samples: readonly T[]): MedianOf<T> {
  const first = samples[0];
  if (first === undefined || typeof first === 'number') {
    return median(samples as readonly number[]) as MedianOf<T>;
  }
  const result: Record<string, number> = {};
  for (const key of Object.keys(first)) {
    const values = samples.map((sample) => (typeof sample === 'number' ? undefined : sample[key]));
    result[key] = values.every((value) => typeof value === 'number')
      ? median(values as number[])
      : Number.NaN;
  }
  return result as MedianOf<T>;
}

/** Call `run` `rounds` times in sequence and return every sample and their median. */
export async function repeatRuns<T extends Sample>(
  run: (round: number) => Promise<T> | T,
  rounds: number,
): Promise<SampleSet<T>> {
  assertRounds(rounds);
  const samples: T[] = [];
  for (let round = 0; round < rounds; round++) samples.push(await run(round));
  return { samples, median: medianOf(samples) };
}

/**
 * Run `a` and `b` alternately, A B A B …, `rounds` times each, so that drift of the machine during the run
 * affects both sides alike; return the samples and medians of each side.
 */
export async function interleaveRuns<A extends Sample, B extends Sample>(
  a: (round: number) => Promise<A> | A,
  b: (round: number) => Promise<B> | B,
  rounds: number,
): Promise<Interleaved<A, B>> {
  assertRounds(rounds);
  const samplesA: A[] = [];
  const samplesB: B[] = [];
  for (let round = 0; round < rounds; round++) {
    samplesA.push(await a(round));
    samplesB.push(await b(round));
  }
  return {
    rounds,
    a: { samples: samplesA, median: medianOf(samplesA) },
    b: { samples: samplesB, median: medianOf(samplesB) },
  };
}

function assertRounds(rounds: number): void {
  if (!Number.isInteger(rounds) || rounds < 1)
    throw new RangeError(`rounds must be a positive integer, got ${rounds}`);
}
