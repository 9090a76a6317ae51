/** A source of the current time in epoch milliseconds. */
export interface Clock {
  now(): number;
}

/** Opaque timer handle. */
export type TimerHandle = unknown;

/** The timer functions strategies use; inject fakes to make tests deterministic. */
export interface Timers {
  setTimeout(callback: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
  setInterval(callback: () => void, ms: number): TimerHandle;
  clearInterval(handle: TimerHandle): void;
}

/** Structured logger; every method is optional to implement via {@link Environment}. */
export interface Logger {
  debug(message: string, fields?: Readonly<Record<string, unknown>>): void;
  info(message: string, fields?: Readonly<Record<string, unknown>>): void;
  warn(message: string, fields?: Readonly<Record<string, unknown>>): void;
  error(message: string, fields?: Readonly<Record<string, unknown>>): void;
}

/**
 * Everything environment-dependent the SDK touches. Every field is optional when passed in; missing ones use
 * the defaults below.
 *
 * @example Deterministic tests
 * ```ts
 * let now = 0;
 * const matchmaker = new Matchmaker(strategy, { environment: { clock: { now: () => now }, random: () => 0.5 } });
 * ```
 */
export interface Environment {
  /** @defaultValue `Date.now` */
  readonly clock: Clock;
  /** @defaultValue the global timer functions, looked up at call time so test fake timers work */
  readonly timers: Timers;
  /** @defaultValue a logger that discards everything */
  readonly logger: Logger;
  /** Uniform random number in [0, 1). @defaultValue `Math.random` */
  readonly random: () => number;
}

/** Default timers: call the globals through wrappers, so fake timers installed after import still apply. */
export const defaultTimers: Timers = {
  setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof globalThis.setTimeout>),
  setInterval: (callback, ms) => globalThis.setInterval(callback, ms),
  clearInterval: (handle) => globalThis.clearInterval(handle as ReturnType<typeof globalThis.setInterval>),
};

const noop = (): void => {};

/** A logger that discards everything. */
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop };

/** Fills in defaults for a partial environment. */
export function resolveEnvironment(partial: Partial<Environment> = {}): Environment {
  return {
    clock: partial.clock ?? { now: () => Date.now() },
    timers: partial.timers ?? defaultTimers,
    logger: partial.logger ?? silentLogger,
    random: partial.random ?? (() => Math.random()),
  };
}

/**
 * A random RFC 4122 version 4 UUID drawn from `random`, so ids are reproducible under an injected source.
 *
 * @internal
 */
export function randomUuid(random: () => number): string {
  const hex: string[] = [];
  for (let i = 0; i < 32; i += 1) hex.push(Math.floor(random() * 16).toString(16));
  hex[12] = '4';
  hex[16] = ((Number.parseInt(hex[16] ?? '0', 16) & 0x3) | 0x8).toString(16);
  const s = hex.join('');
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}`;
}
