/**
 * Turning a captured row change into the `postgres_changes` payloads of each subscribed channel, as the
 * server's `realtime.apply_rls` and message dispatcher do.
 *
 * @internal
 * @packageDocumentation
 */
import type { RowChange } from '../internal/contracts';
import { matchesFilters, type SubscriptionParams } from './postgresFilter';

/** Rows larger than this (as WAL JSON) keep only fields of at most 64 bytes and report error 413. */
const MAX_RECORD_BYTES = 1024 * 1024;
const MAX_FIELD_BYTES_WHEN_TOO_LARGE = 64;

/** Whether a binding wants this change at all (event, schema, table and column filters). */
export function bindingWants(params: SubscriptionParams, change: RowChange): boolean {
  if (params.event !== '*' && params.event !== change.type) return false;
  if (params.schema !== '*' && params.schema !== change.schema) return false;
  if (params.table !== '*' && params.table !== change.table) return false;
  if (params.filters.length === 0) return true;
  return (
    matchesFilters(params.filters, change.record, change.columns) ||
    (change.type === 'DELETE' && matchesFilters(params.filters, change.oldRecord, change.columns))
  );
}

/** The bindings of one role that see an error row instead of data. */
export function changeError(change: RowChange, selectable: ReadonlySet<string>): string | undefined {
  if (change.type === 'DELETE') return undefined;
  if (change.primaryKey.length === 0) return 'Error 400: Bad Request, no primary key';
  if (!change.primaryKey.every((column) => selectable.has(column))) return 'Error 401: Unauthorized';
  return undefined;
}

/**
 * The `data` object for one subscriber: columns the role may select (and, with `select`, only the chosen
 * ones plus the primary key); `record` for INSERT/UPDATE; `old_record` for UPDATE/DELETE (primary key only
 * for DELETE on an RLS table).
 */
export function changeData(
  change: RowChange,
  selectable: ReadonlySet<string>,
  select: readonly string[] | null,
): Record<string, unknown> {
  const primaryKey = new Set(change.primaryKey);
  const error = changeError(change, selectable);
  if (error !== undefined) {
    return { schema: change.schema, table: change.table, type: change.type, errors: [error] };
  }
  const allowed = (name: string) =>
    selectable.has(name) && (select === null || select.includes(name) || primaryKey.has(name));
  const tooLarge =
    Buffer.byteLength(JSON.stringify([change.record ?? null, change.oldRecord ?? null]), 'utf8') >
    MAX_RECORD_BYTES;
  const keep = (value: unknown) =>
    !tooLarge || Buffer.byteLength(textOf(value), 'utf8') <= MAX_FIELD_BYTES_WHEN_TOO_LARGE;
  const pick = (image: Readonly<Record<string, unknown>> | undefined, onlyKey: boolean) => {
    if (image === undefined) return null;
    const picked: Record<string, unknown> = {};
    let any = false;
    for (const [name, value] of Object.entries(image)) {
      if (!allowed(name) || !keep(value) || (onlyKey && !primaryKey.has(name))) continue;
      picked[name] = value;
      any = true;
    }
    return any ? picked : null;
  };
  const data: Record<string, unknown> = {
    schema: change.schema,
    table: change.table,
    commit_timestamp: change.commitTimestamp,
    type: change.type,
    columns: change.columns
      .filter((column) => allowed(column.name))
      .map(({ name, type }) => ({ name, type })),
  };
  if (change.type === 'INSERT' || change.type === 'UPDATE') data.record = pick(change.record, false);
  if (change.type === 'UPDATE') data.old_record = pick(change.oldRecord, false);
  if (change.type === 'DELETE') data.old_record = pick(change.oldRecord, change.rlsEnabled);
  data.errors = tooLarge ? ['Error 413: Payload Too Large'] : null;
  return data;
}

function textOf(value: unknown): string {
  if (value === null || value === undefined) return '';
  return typeof value === 'string' ? value : JSON.stringify(value);
}
