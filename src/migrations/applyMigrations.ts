/**
 * Applies the shipped SQL migrations in one transaction under a namespaced advisory lock.
 *
 * @packageDocumentation
 */
import { MatchmakingError, MatchmakingErrorCode } from '../core/errors';
import { MigrationError, MigrationErrorCode } from './errors';
import { MIGRATIONS } from './migrations.generated';
import type { ApplyMigrationsOptions, ApplyMigrationsResult, Migration, PgQueryable } from './types';

/** Advisory lock (two-key form) serialising runners: classid 'mmkr', objid 1. */
export const MIGRATION_LOCK_KEY = [1835887474, 1] as const;

const DEFAULT_LOCK_TIMEOUT_MS = 60_000;

interface LedgerRow {
  readonly version: string;
  readonly checksum: string | null;
}

/**
 * Applies every migration the database lacks, oldest first, in ONE transaction.
 *
 * @remarks
 * - Runners are serialised by a transaction-level advisory lock, so concurrent deploys are safe.
 * - The ledger is `matchmaker.schema_migrations`; a rerun finds everything applied and is a no-op.
 * - If any migration fails, the whole run rolls back (including earlier migrations of the same run) and a
 *   {@link MigrationError} with the failing version is thrown, the database error as `cause`.
 * - An applied migration whose checksum differs from the shipped file is refused (append-only).
 * - `db` must be a single session (a `pg` `Client` or `PoolClient`), never a pool.
 *
 * @example
 * ```ts
 * const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
 * await client.connect();
 * const { applied, version } = await applyMigrations(client);
 * await client.end();
 * ```
 */
export async function applyMigrations(
  db: PgQueryable,
  options: ApplyMigrationsOptions = {},
): Promise<ApplyMigrationsResult> {
  if (typeof (db as { totalCount?: unknown }).totalCount === 'number') {
    throw new MatchmakingError(
      MatchmakingErrorCode.InvalidArgument,
      'applyMigrations needs one session, not a pool: pass `await pool.connect()` (and release it after).',
    );
  }
  const migrations = [...(options.migrations ?? MIGRATIONS)].sort((a, b) =>
    a.version.localeCompare(b.version),
  );
  const lockTimeoutMs = Math.max(0, Math.floor(options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS));

  await db.query('begin');
  let current: Migration | undefined;
  try {
    await db.query(`set local lock_timeout = ${lockTimeoutMs}`);
    try {
      await db.query('select pg_advisory_xact_lock($1, $2)', [...MIGRATION_LOCK_KEY]);
    } catch (cause) {
      if ((cause as { code?: unknown }).code === '55P03') {
        throw new MigrationError(
          MigrationErrorCode.LockTimeout,
          `supabase-matchmaker: another migration run held the lock for more than ${lockTimeoutMs} ms; retry when it is done.`,
          undefined,
          { cause },
        );
      }
      throw cause;
    }
    const ledger = await readLedger(db);
    const applied: string[] = [];
    const skipped: string[] = [];
    for (const migration of migrations) {
      const recorded = ledger.get(migration.version);
      if (recorded !== undefined) {
        if (recorded.checksum !== null && recorded.checksum !== migration.checksum) {
          throw new MigrationError(
            MigrationErrorCode.ChecksumMismatch,
            `supabase-matchmaker: migration ${migration.filename} was applied with different content ` +
              `(checksum ${recorded.checksum}, file ${migration.checksum}). Migrations are append-only: ` +
              'restore the original file and add a new migration instead.',
            migration.version,
          );
        }
        skipped.push(migration.version);
        continue;
      }
      current = migration;
      await db.query(migration.sql);
      await db.query(
        `insert into matchmaker.schema_migrations (version, name, checksum) values ($1, $2, $3)
         on conflict (version) do update set checksum = excluded.checksum`,
        [migration.version, migration.name, migration.checksum],
      );
      current = undefined;
      applied.push(migration.version);
      options.onApplied?.(migration);
    }
    const versions = [...ledger.keys(), ...applied].sort();
    await db.query('commit');
    return { applied, skipped, version: versions.at(-1) ?? '' };
  } catch (error) {
    await db.query('rollback').catch(() => undefined);
    if (error instanceof MatchmakingError) throw error;
    const text = error instanceof Error ? error.message : String(error);
    throw new MigrationError(
      MigrationErrorCode.Failed,
      current
        ? `supabase-matchmaker: migration ${current.filename} failed, nothing was applied: ${text}`
        : `supabase-matchmaker: applying migrations failed, nothing was applied: ${text}`,
      current?.version,
      { cause: error },
    );
  }
}

/** The ledger as version -> checksum, or empty when the schema was never migrated. */
export async function readLedger(db: PgQueryable): Promise<Map<string, LedgerRow>> {
  const present = await db.query("select to_regclass('matchmaker.schema_migrations') is not null as present");
  const ledger = new Map<string, LedgerRow>();
  if (!(present.rows[0] as { present?: boolean } | undefined)?.present) return ledger;
  const result = await db.query(
    'select version, checksum from matchmaker.schema_migrations order by version',
  );
  for (const row of result.rows as LedgerRow[]) ledger.set(row.version, row);
  return ledger;
}
