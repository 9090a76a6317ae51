/**
 * The database half of the local stack as the Realtime half sees it ({@link RealtimeDatabaseBridge}):
 * private-channel policies on `realtime.messages`, RLS checks of captured rows, publication lookups, and the
 * change and broadcast feeds.
 *
 * @packageDocumentation
 */
import type pg from 'pg';
import type {
  ChangeColumn,
  ChannelExtension,
  ChannelPermissions,
  DatabaseBroadcast,
  JwtClaims,
  RealtimeDatabaseBridge,
  RowChange,
} from '../internal/contracts';
import type { ChangeFeed } from './ChangeFeed';

/** Options of {@link DatabaseBridge}. */
export interface DatabaseBridgeOptions {
  /** Pool on the stack database, connected as a user that may `SET ROLE` to the API roles. */
  readonly pool: pg.Pool;
  /** The change feed whose changes and broadcasts the bridge forwards. */
  readonly feed: Pick<ChangeFeed, 'onChange' | 'onBroadcast' | 'syncPublication'>;
}

/** SQLSTATE of `insufficient_privilege`, which is also what an RLS `WITH CHECK` failure raises. */
const INSUFFICIENT_PRIVILEGE = '42501';

/**
 * {@link RealtimeDatabaseBridge} over a `pg` pool and a {@link ChangeFeed}.
 *
 * @remarks
 * Every check runs in its own transaction that is always rolled back. As the Realtime server does, it sets
 * `role`, `realtime.topic`, `request.jwt.claims`, `request.jwt.claim.sub`, `request.jwt.claim.role` and
 * `request.headers` with `set_config(..., true)` before evaluating anything as the token's role.
 */
export class DatabaseBridge implements RealtimeDatabaseBridge {
  readonly #pool: pg.Pool;
  readonly #feed: DatabaseBridgeOptions['feed'];

  constructor(options: DatabaseBridgeOptions) {
    this.#pool = options.pool;
    this.#feed = options.feed;
  }

  /**
   * Read check for a private channel: probe rows `(topic, extension)` are inserted into `realtime.messages`
   * (as the admin user), then selected as the token's role; an extension is readable when its probe row is
   * visible through the SELECT policies. Extensions not asked for are reported `false`.
   */
  async authorizeChannelRead(
    claims: JwtClaims,
    topic: string,
    extensions: readonly ChannelExtension[],
  ): Promise<ChannelPermissions> {
    const wanted = [...new Set(extensions)];
    const read = { broadcast: false, presence: false };
    if (wanted.length === 0) return { read };
    await this.#rolledBack(async (client) => {
      const probes = await client.query<{ id: string; extension: ChannelExtension }>(
        `insert into realtime.messages (topic, extension)
         select $1, unnest($2::text[]) returning id::text, extension`,
        [topic, wanted],
      );
      await setRequestContext(client, claims, topic);
      const visible = await client.query<{ extension: ChannelExtension }>(
        'select extension from realtime.messages where id = any ($1::uuid[])',
        [probes.rows.map((row) => row.id)],
      );
      for (const row of visible.rows) read[row.extension] = true;
    });
    return { read };
  }

  /** Write check for a private channel: an INSERT into `realtime.messages` as the token's role, rolled back. */
  async authorizeChannelWrite(
    claims: JwtClaims,
    topic: string,
    extension: ChannelExtension,
  ): Promise<boolean> {
    return this.#rolledBack(async (client) => {
      await setRequestContext(client, claims, topic);
      try {
        await client.query('insert into realtime.messages (topic, extension) values ($1, $2)', [
          topic,
          extension,
        ]);
        return true;
      } catch (error) {
        if ((error as { code?: unknown }).code === INSUFFICIENT_PRIVILEGE) return false;
        throw error;
      }
    });
  }

  /**
   * Whether `schema.table` (or, with `table` undefined or `'*'`, any table of `schema`; `schema` may be `'*'`)
   * is in the `supabase_realtime` publication. A positive answer also makes sure the capture trigger is on
   * the table (tables published after start are picked up here at the latest).
   */
  async isPublished(schema: string, table: string | undefined): Promise<boolean> {
    const { rows } = await this.#pool.query<{ published: boolean }>(
      `select exists (select 1 from pg_catalog.pg_publication_tables
                       where pubname = 'supabase_realtime'
                         and ($1 = '*' or schemaname = $1)
                         and ($2::text is null or $2 = '*' or tablename = $2)) as published`,
      [schema, table ?? null],
    );
    const published = rows[0]?.published === true;
    if (published) await this.#feed.syncPublication();
    return published;
  }

  /** Columns of `schema.table` with their `typname`, in attribute order; undefined when there is no such table. */
  async tableColumns(schema: string, table: string): Promise<readonly ChangeColumn[] | undefined> {
    const { rows } = await this.#pool.query<{ columns: ChangeColumn[] | null }>(
      `select (select coalesce(json_agg(json_build_object('name', a.attname, 'type', t.typname) order by a.attnum),
                               '[]'::json)
                 from pg_catalog.pg_attribute a join pg_catalog.pg_type t on t.oid = a.atttypid
                where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) as columns
         from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        where n.nspname = $1 and c.relname = $2 and c.relkind in ('r', 'p', 'v', 'm', 'f')`,
      [schema, table],
    );
    return rows[0]?.columns ?? undefined;
  }

  /**
   * Whether a subscriber with `claims` may see `change`, and which columns its role may SELECT.
   *
   * @remarks
   * INSERT and UPDATE: the row is selected by primary key as the subscriber's role and claims, so table RLS
   * (SELECT policies) and privileges decide; a role without SELECT on the key sees nothing. DELETE events are
   * not checked with RLS (as on Supabase) and are visible. Tables without a primary key are not visible.
   */
  async rowVisibleTo(
    claims: JwtClaims,
    change: RowChange,
  ): Promise<{ visible: boolean; columns: readonly string[] }> {
    const relation = `${quoteIdent(change.schema)}.${quoteIdent(change.table)}`;
    return this.#rolledBack(async (client) => {
      const privileges = await client.query<{ name: string }>(
        `select a.attname::text as name
           from pg_catalog.pg_attribute a
          where a.attrelid = $1::regclass and a.attnum > 0 and not a.attisdropped
            and pg_catalog.has_column_privilege($2, a.attrelid, a.attnum, 'SELECT')
          order by a.attnum`,
        [relation, claims.role],
      );
      const columns = privileges.rows.map((row) => row.name);
      if (change.type === 'DELETE') return { visible: true, columns };
      const key = change.record;
      if (change.primaryKey.length === 0 || !key) return { visible: false, columns };

      await setRequestContext(client, claims, undefined);
      const matchKey = change.primaryKey
        .map((column) => `_t.${quoteIdent(column)} = _k.${quoteIdent(column)}`)
        .join(' and ');
      try {
        const { rows } = await client.query<{ visible: boolean }>(
          `select exists (select 1 from ${relation} as _t, jsonb_populate_record(null::${relation}, $1::jsonb) as _k
                           where ${matchKey}) as visible`,
          [JSON.stringify(Object.fromEntries(change.primaryKey.map((column) => [column, key[column]])))],
        );
        return { visible: rows[0]?.visible === true, columns };
      } catch (error) {
        if ((error as { code?: unknown }).code === INSUFFICIENT_PRIVILEGE) return { visible: false, columns };
        throw error;
      }
    });
  }

  /** Committed changes of published tables, in commit order. Returns an unsubscribe function. */
  onChange(listener: (change: RowChange) => void): () => void {
    return this.#feed.onChange(listener);
  }

  /** `realtime.send()` messages, in commit order. Returns an unsubscribe function. */
  onBroadcast(listener: (message: DatabaseBroadcast) => void): () => void {
    return this.#feed.onBroadcast(listener);
  }

  async #rolledBack<T>(run: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('begin');
      try {
        return await run(client);
      } finally {
        await client.query('rollback').catch((error: unknown) => {
          broken = error instanceof Error ? error : new Error(String(error));
        });
      }
    } finally {
      client.release(broken);
    }
  }
}

/** Realtime's request context: role, topic and claims, local to the current transaction. */
async function setRequestContext(
  client: pg.PoolClient,
  claims: JwtClaims,
  topic: string | undefined,
): Promise<void> {
  await client.query(
    `select pg_catalog.set_config('role', $1, true),
            pg_catalog.set_config('realtime.topic', $2, true),
            pg_catalog.set_config('request.jwt.claims', $3, true),
            pg_catalog.set_config('request.jwt.claim.sub', $4, true),
            pg_catalog.set_config('request.jwt.claim.role', $1, true),
            pg_catalog.set_config('request.headers', '{}', true)`,
    [claims.role, topic ?? '', JSON.stringify(claims), typeof claims.sub === 'string' ? claims.sub : ''],
  );
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
