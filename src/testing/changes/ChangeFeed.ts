/**
 * Committed row changes of published tables and `realtime.send()` broadcasts, read in commit order from the
 * trigger-based capture queue (see `changeCaptureSql.ts`), without logical replication.
 *
 * @packageDocumentation
 */
import pg from 'pg';
import type { ChangeColumn, DatabaseBroadcast, RowChange } from '../internal/contracts';
import { CHANGE_CAPTURE_SQL, CHANGES_CHANNEL, DDL_CHANNEL, DDL_EVENT_TRIGGER_SQL } from './changeCaptureSql';

/** Options of {@link ChangeFeed.start}. */
export interface ChangeFeedOptions {
  /** Pool on the stack database (used to install the capture and to sync the publication). */
  readonly pool: pg.Pool;
  /** Connection string of the stack database; the feed opens its own LISTEN connection with it. */
  readonly connectionString: string;
  /**
   * How often to re-sync the publication's triggers when the event trigger could not be installed
   * (the connecting user is not a superuser).
   * @defaultValue 1000
   */
  readonly fallbackSyncIntervalMs?: number;
  /** Called with errors of the LISTEN connection or of a listener; defaults to ignoring them. */
  readonly onError?: (error: Error) => void;
}

interface QueuedRow {
  id: string;
  kind: 'change' | 'broadcast';
  payload: Record<string, unknown>;
}

/**
 * Reads captured changes as their transactions commit and fans them out to listeners.
 *
 * @remarks
 * Each captured transaction notifies its transaction id once; the feed then deletes and emits that
 * transaction's queued rows in capture order. Postgres delivers notifications in commit order, so
 * listeners see changes in commit order. Tables added to `supabase_realtime` later get their trigger from
 * an event trigger (or, for non-superusers, from {@link ChangeFeed.syncPublication} and a periodic re-sync).
 */
export class ChangeFeed {
  readonly #pool: pg.Pool;
  readonly #listener: pg.Client;
  readonly #changeListeners = new Set<(change: RowChange) => void>();
  readonly #broadcastListeners = new Set<(message: DatabaseBroadcast) => void>();
  readonly #ddlListeners = new Set<(tag: string) => void>();
  readonly #onError: (error: Error) => void;
  #queue: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #eventTrigger = false;

  private constructor(pool: pg.Pool, listener: pg.Client, onError: (error: Error) => void) {
    this.#pool = pool;
    this.#listener = listener;
    this.#onError = onError;
  }

  /** Install the capture (idempotent), open the LISTEN connection and start delivering. */
  static async start(options: ChangeFeedOptions): Promise<ChangeFeed> {
    const onError = options.onError ?? (() => {});
    await options.pool.query(CHANGE_CAPTURE_SQL);
    let eventTrigger = true;
    try {
      await options.pool.query(DDL_EVENT_TRIGGER_SQL);
    } catch (error) {
      if ((error as { code?: unknown }).code !== '42501') throw error;
      eventTrigger = false;
    }

    const listener = new pg.Client({ connectionString: options.connectionString });
    const feed = new ChangeFeed(options.pool, listener, onError);
    feed.#eventTrigger = eventTrigger;
    listener.on('error', (error) => {
      if (!feed.#closed) onError(error);
    });
    listener.on('notification', (message) => feed.#onNotification(message.channel, message.payload ?? ''));
    await listener.connect();
    await listener.query(`listen ${CHANGES_CHANNEL}; listen ${DDL_CHANNEL}`);
    // Anything queued before we listened belongs to no one.
    await listener.query('delete from _sm_stack.changes');
    if (!eventTrigger) {
      feed.#timer = setInterval(() => {
        feed.syncPublication().catch((error: unknown) => onError(toError(error)));
      }, options.fallbackSyncIntervalMs ?? 1000);
      feed.#timer.unref();
    }
    return feed;
  }

  /** Whether tables added to the publication later are picked up by an event trigger (else by re-syncs). */
  get hasEventTrigger(): boolean {
    return this.#eventTrigger;
  }

  /** Put the capture trigger on every table of `supabase_realtime` (and take it off the others). */
  async syncPublication(): Promise<void> {
    await this.#pool.query('select _sm_stack.sync_publication()');
  }

  /** Listen to committed row changes, in commit order. Returns an unsubscribe function. */
  onChange(listener: (change: RowChange) => void): () => void {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
  }

  /** Listen to committed `realtime.messages` broadcasts, in commit order. Returns an unsubscribe function. */
  onBroadcast(listener: (message: DatabaseBroadcast) => void): () => void {
    this.#broadcastListeners.add(listener);
    return () => this.#broadcastListeners.delete(listener);
  }

  /** Listen to committed DDL (the command tag), e.g. to refresh a schema cache. Returns an unsubscribe function. */
  onSchemaChange(listener: (commandTag: string) => void): () => void {
    this.#ddlListeners.add(listener);
    return () => this.#ddlListeners.delete(listener);
  }

  /** Stop delivering and close the LISTEN connection. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.#queue.catch(() => {});
    await this.#listener.end().catch(() => {});
  }

  #onNotification(channel: string, payload: string): void {
    if (this.#closed) return;
    if (channel === DDL_CHANNEL) {
      for (const listener of this.#ddlListeners) this.#safely(() => listener(payload));
      return;
    }
    // Serialise: one transaction's rows are read and emitted before the next notification is handled.
    this.#queue = this.#queue
      .then(() => this.#drain(payload))
      .catch((error: unknown) => this.#onError(toError(error)));
  }

  async #drain(xid: string): Promise<void> {
    if (this.#closed) return;
    const { rows } = await this.#listener.query<QueuedRow>(
      `with taken as (delete from _sm_stack.changes where xid = $1 returning id, kind, payload)
       select taken.id::text as id, kind, payload from taken order by taken.id`,
      [xid],
    );
    for (const row of rows) {
      if (row.kind === 'change') {
        const change = toRowChange(row.payload);
        for (const listener of this.#changeListeners) this.#safely(() => listener(change));
      } else {
        const message = toBroadcast(row.payload);
        for (const listener of this.#broadcastListeners) this.#safely(() => listener(message));
      }
    }
  }

  #safely(run: () => void): void {
    try {
      run();
    } catch (error) {
      this.#onError(toError(error));
    }
  }
}

function toError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** `bytea` reaches Realtime clients as hex without the `\x` prefix; `to_jsonb` keeps the prefix. */
function fixBytea(
  record: Record<string, unknown> | undefined,
  columns: readonly ChangeColumn[],
): Record<string, unknown> | undefined {
  if (!record) return record;
  for (const column of columns) {
    const value = record[column.name];
    if (column.type === 'bytea' && typeof value === 'string' && value.startsWith('\\x')) {
      record[column.name] = value.slice(2);
    }
  }
  return record;
}

function toRowChange(payload: Record<string, unknown>): RowChange {
  const columns = payload.columns as ChangeColumn[];
  const type = payload.type as RowChange['type'];
  const record = fixBytea((payload.record ?? undefined) as Record<string, unknown> | undefined, columns);
  const oldRecord = fixBytea(
    (payload.old_record ?? undefined) as Record<string, unknown> | undefined,
    columns,
  );
  return {
    schema: payload.schema as string,
    table: payload.table as string,
    type,
    commitTimestamp: payload.commit_timestamp as string,
    columns,
    ...(record ? { record } : {}),
    ...(oldRecord ? { oldRecord } : {}),
    primaryKey: payload.primary_key as string[],
    rlsEnabled: payload.rls_enabled === true,
  };
}

function toBroadcast(payload: Record<string, unknown>): DatabaseBroadcast {
  return {
    id: payload.id as string,
    topic: payload.topic as string,
    event: (payload.event as string | null) ?? '',
    payload: payload.payload ?? null,
    private: payload.private === true,
  };
}
