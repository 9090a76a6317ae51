/**
 * Search for the highest rate a system sustains: double from a start rate until a rate fails, then bisect between
 * the highest sustained and the lowest failed rate until they are within `precision` of each other, or the step
 * budget is spent. Pure (the caller runs each rate), so several searches can run in lockstep, interleaved.
 *
 * @packageDocumentation
 */

/** Options of {@link RateSearch}. */
export interface RateSearchOptions {
  /** First rate tried. */
  readonly start: number;
  /** Most rates tried. */
  readonly steps: number;
  /** Rates are rounded to a multiple of this (at least one granule). @defaultValue 100 */
  readonly granularity?: number;
  /** Stop when lowest failed / highest sustained is at most this. @defaultValue 1.15 */
  readonly precision?: number;
}

/** One tried rate. */
export interface RateStep {
  readonly rate: number;
  readonly sustained: boolean;
}

/** A doubling-then-bisecting search for the highest sustained rate. */
export class RateSearch {
  readonly #steps: number;
  readonly #granularity: number;
  readonly #precision: number;
  readonly #history: RateStep[] = [];
  #next: number | undefined;
  #best = 0;
  #lowestFailed = Number.POSITIVE_INFINITY;

  constructor(options: RateSearchOptions) {
    this.#steps = options.steps;
    this.#granularity = options.granularity ?? 100;
    this.#precision = options.precision ?? 1.15;
    this.#next = options.steps > 0 ? this.#round(options.start) : undefined;
  }

  /** The next rate to try, or undefined when the search is over. */
  get next(): number | undefined {
    return this.#next;
  }

  /** The highest sustained rate so far (0 when none was). */
  get best(): number {
    return this.#best;
  }

  /** The lowest rate that failed so far (Infinity when none did). */
  get lowestFailed(): number {
    return this.#lowestFailed;
  }

  /** Every tried rate, in order. */
  get history(): readonly RateStep[] {
    return this.#history;
  }

  /** `1,000 ok, 2,000 ok, 4,000 failed, …` */
  describe(): string {
    return this.#history
      .map((s) => `${s.rate.toLocaleString('en-US')} ${s.sustained ? 'ok' : 'failed'}`)
      .join(', ');
  }

  /** Record the outcome of `rate` (normally {@link next}) and choose the next rate. */
  record(rate: number, sustained: boolean): void {
    this.#history.push({ rate, sustained });
    if (sustained) this.#best = Math.max(this.#best, rate);
    else this.#lowestFailed = Math.min(this.#lowestFailed, rate);
    if (this.#history.length >= this.#steps) {
      this.#next = undefined;
      return;
    }
    let next: number;
    if (this.#lowestFailed === Number.POSITIVE_INFINITY) next = this.#best * 2;
    else if (this.#best === 0) next = this.#lowestFailed / 2;
    else if (this.#lowestFailed / this.#best <= this.#precision) next = Number.NaN;
    else next = (this.#best + this.#lowestFailed) / 2;
    const rounded = Number.isNaN(next) ? undefined : this.#round(next);
    const tried = rounded !== undefined && this.#history.some((s) => s.rate === rounded);
    this.#next = rounded === undefined || tried || rounded <= 0 ? undefined : rounded;
  }

  #round(rate: number): number {
    return Math.max(this.#granularity, Math.round(rate / this.#granularity) * this.#granularity);
  }
}
