/**
 * Read-only check that a database has the queue tier's schema this package needs.
 *
 * @packageDocumentation
 */
import { readLedger } from './applyMigrations';
import { SchemaMismatchError } from './errors';
import { LATEST_SCHEMA_VERSION, MIGRATIONS } from './migrations.generated';
import type { Migration, PgQueryable, SchemaStatus } from './types';

/**
 * Fails fast, with a {@link SchemaMismatchError} that says how to fix it, when the database lacks any shipped
 * migration. Runs only SELECTs (safe on a read replica or in a read-only transaction); needs read access to
 * `matchmaker.schema_migrations` (the owner or `service_role`).
 *
 * @example
 * ```ts
 * const status = await checkSchema(client); // throws SchemaMismatchError when outdated
 * console.log(`matchmaker schema ${status.version}`);
 * ```
 */
export async function checkSchema(
  db: PgQueryable,
  migrations: readonly Migration[] = MIGRATIONS,
): Promise<SchemaStatus> {
  const ledger = await readLedger(db);
  const expected = migrations.length > 0 ? migrations[migrations.length - 1]!.version : LATEST_SCHEMA_VERSION;
  const recorded = [...ledger.keys()].sort();
  const found = recorded.at(-1) ?? null;
  if (found === null)
    throw new SchemaMismatchError(
      'missing',
      null,
      expected,
      migrations.map((m) => m.version),
    );
  const missing = migrations.map((m) => m.version).filter((version) => !ledger.has(version));
  if (missing.length > 0) throw new SchemaMismatchError('outdated', found, expected, missing);
  const known = new Set(migrations.map((m) => m.version));
  return { version: found, expected, newer: recorded.some((version) => !known.has(version)) };
}
