import type { Logger } from '../core/environment';

/** Log levels, least to most severe. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Options of {@link createJsonLogger}. */
export interface JsonLoggerOptions {
  /** Lowest level written. @defaultValue `'info'` */
  readonly level?: LogLevel;
  /** Where lines go. @defaultValue `process.stdout` */
  readonly write?: (line: string) => void;
  /** Fields added to every line (e.g. the node id). */
  readonly base?: Readonly<Record<string, unknown>>;
}

function plain(value: unknown): unknown {
  if (value instanceof Error) {
    const out: Record<string, unknown> = { name: value.name, message: value.message };
    if ('code' in value) out.code = (value as { code: unknown }).code;
    return out;
  }
  return value;
}

/**
 * A structured logger writing one JSON object per line (`time`, `level`, `msg`, then the fields), the format log
 * shippers expect. The server takes any {@link Logger}; this is the CLI's default.
 *
 * @example
 * ```ts
 * const logger = createJsonLogger({ level: 'debug', base: { service: 'matchmaker' } });
 * logger.info('listening', { port: 8787 });
 * ```
 */
export function createJsonLogger(options: JsonLoggerOptions = {}): Logger {
  const min = ORDER[options.level ?? 'info'];
  const write = options.write ?? ((line: string) => process.stdout.write(line));
  const base = options.base ?? {};
  const log =
    (level: LogLevel) =>
    (message: string, fields: Readonly<Record<string, unknown>> = {}): void => {
      if (ORDER[level] < min) return;
      const entry: Record<string, unknown> = { time: new Date().toISOString(), level, msg: message, ...base };
      for (const [key, value] of Object.entries(fields)) entry[key] = plain(value);
      write(`${JSON.stringify(entry)}\n`);
    };
  return { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}
