/**
 * Errors of the SQL migration runner; both are {@link MatchmakingError}s.
 *
 * @packageDocumentation
 */
import { MatchmakingError, MatchmakingErrorCode, type MatchmakingErrorOptions } from '../core/errors';

/** Why {@link SchemaMismatchError} was thrown. */
export type SchemaMismatchReason = 'missing' | 'outdated';

/**
 * The database does not have the queue tier's schema this package needs. The message says how to fix it.
 *
 * @remarks
 * `code` is always `schema_mismatch`.
 */
export class SchemaMismatchError extends MatchmakingError {
  /** `missing`: never migrated; `outdated`: some shipped migrations are not applied. */
  readonly reason: SchemaMismatchReason;
  /** Newest version recorded in the database, or null when there is none. */
  readonly found: string | null;
  /** The version this package needs. */
  readonly expected: string;
  /** Shipped versions the database lacks, oldest first. */
  readonly missing: readonly string[];

  constructor(
    reason: SchemaMismatchReason,
    found: string | null,
    expected: string,
    missing: readonly string[],
    options: MatchmakingErrorOptions = {},
  ) {
    const fix =
      'Apply the migrations: `npx supabase-matchmaker migrate --database-url <postgres url>`, or copy them into your ' +
      'Supabase project with `npx supabase-matchmaker migrations --out supabase/migrations` and run `supabase db push`.';
    const what =
      reason === 'missing'
        ? 'the matchmaker schema is not installed in this database'
        : `the matchmaker schema is at ${found ?? 'an unknown version'} but this package needs ${expected} (missing ${missing.join(', ')})`;
    super(MatchmakingErrorCode.SchemaMismatch, `supabase-matchmaker: ${what}. ${fix}`, {
      ...options,
      details: { reason, found, expected, missing, ...options.details },
    });
    this.name = 'SchemaMismatchError';
    this.reason = reason;
    this.found = found;
    this.expected = expected;
    this.missing = missing;
  }
}

/** Codes carried by {@link MigrationError}. */
export const MigrationErrorCode = {
  /** A migration's SQL failed; everything this run did was rolled back. */
  Failed: 'migration_failed',
  /** An applied migration's file changed since (migrations are append-only). */
  ChecksumMismatch: 'migration_checksum_mismatch',
  /** Another runner held the migration lock for longer than `lockTimeoutMs`. */
  LockTimeout: 'migration_lock_timeout',
} as const;

/** Union of {@link MigrationErrorCode} values. */
export type MigrationErrorCode = (typeof MigrationErrorCode)[keyof typeof MigrationErrorCode];

/** Applying the migrations failed; nothing of this run was kept (one transaction). */
export class MigrationError extends MatchmakingError {
  /** The migration that failed, when one did. */
  readonly version: string | undefined;

  constructor(
    code: MigrationErrorCode,
    message: string,
    version?: string,
    options: MatchmakingErrorOptions = {},
  ) {
    super(code, message, { ...options, details: { version, ...options.details } });
    this.name = 'MigrationError';
    this.version = version;
  }
}
