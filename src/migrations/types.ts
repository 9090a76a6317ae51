/**
 * Types of the SQL migration runner.
 *
 * @packageDocumentation
 */

/**
 * The smallest database session the runner needs: one connection that runs `query(text, params)`.
 *
 * @remarks
 * A `pg` `Client` or a `PoolClient` fits structurally; so does any driver wrapper with this method. It must be a
 * single session (the runner opens a transaction and takes an advisory lock on it), so do not pass a `Pool`:
 * check a client out first. No `pg` types appear in this API, so consumers are not tied to a driver version.
 */
export interface PgQueryable {
  /** Runs one statement (or, without `params`, a script of several) and resolves to its rows. */
  query(text: string, params?: unknown[]): Promise<{ rows: readonly object[] }>;
}

/** One shipped migration: a `supabase/migrations/<version>_<name>.sql` file. */
export interface Migration {
  /** The 14-digit UTC timestamp of the file name, e.g. `20261128000100`; migrations apply in this order. */
  readonly version: string;
  /** The snake_case name after the timestamp, e.g. `matchmaker_queue`. */
  readonly name: string;
  /** The file name, e.g. `20261128000100_matchmaker_queue.sql`. */
  readonly filename: string;
  /** SHA-256 (hex) of `sql`; an applied migration whose checksum changed is refused. */
  readonly checksum: string;
  /** The SQL script. */
  readonly sql: string;
}

/** Options of {@link applyMigrations}. */
export interface ApplyMigrationsOptions {
  /**
   * Migrations to apply instead of the shipped ones (tests use this to inject a failing one).
   * @defaultValue the shipped {@link MIGRATIONS}
   */
  readonly migrations?: readonly Migration[];
  /**
   * How long to wait for another runner's lock (and any other lock) before giving up, in milliseconds.
   * @defaultValue 60000
   */
  readonly lockTimeoutMs?: number;
  /** Called after each migration ran (still inside the transaction). */
  readonly onApplied?: (migration: Migration) => void;
}

/** What {@link applyMigrations} did. */
export interface ApplyMigrationsResult {
  /** Versions applied by this call, oldest first (empty when the database was up to date). */
  readonly applied: readonly string[];
  /** Versions that were already applied. */
  readonly skipped: readonly string[];
  /** The newest version recorded in the database after the call. */
  readonly version: string;
}

/** What {@link checkSchema} found. */
export interface SchemaStatus {
  /** The newest version recorded in the database. */
  readonly version: string;
  /** The version this package needs ({@link LATEST_SCHEMA_VERSION}). */
  readonly expected: string;
  /** True when the database also has versions this package does not know (a newer package migrated it). */
  readonly newer: boolean;
}
