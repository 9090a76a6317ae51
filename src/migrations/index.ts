/**
 * The shipped SQL migrations of every tier (the service tier persists into `matchmaker.matches`): the manifest,
 * the runner and the schema check.
 *
 * @packageDocumentation
 */
export { applyMigrations, MIGRATION_LOCK_KEY } from './applyMigrations';
export { checkSchema } from './checkSchema';
export type { SchemaMismatchReason } from './errors';
export { MigrationError, MigrationErrorCode, SchemaMismatchError } from './errors';
export { LATEST_SCHEMA_VERSION, MIGRATIONS } from './migrations.generated';
export type {
  ApplyMigrationsOptions,
  ApplyMigrationsResult,
  Migration,
  PgQueryable,
  SchemaStatus,
} from './types';
