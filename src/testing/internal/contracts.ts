/**
 * Internal seams of the local Supabase-compatible stack.
 *
 * The stack has two halves that meet here: the database half (Postgres with Supabase's shape, the
 * PostgREST-like RPC endpoint, change capture, RLS checks) and the Realtime half (the Phoenix-style
 * WebSocket server and its HTTP broadcast API). The Realtime half only sees the database through
 * {@link RealtimeDatabaseBridge}, so it can be unit-tested with a hand-written fake.
 *
 * @internal
 */

/** Verified JWT claims. `role` and `exp` are always present once verified. */
export interface JwtClaims {
  readonly role: string;
  readonly exp: number;
  readonly sub?: string;
  readonly [claim: string]: unknown;
}

/** Why a token was refused; the Realtime and REST halves turn this into their own wire messages. */
export type JwtFailureKind = 'missing' | 'malformed' | 'signature' | 'expired' | 'claims' | 'exp_invalid';

/** One column of a captured row, as Realtime reports it (`typname`). */
export interface ChangeColumn {
  readonly name: string;
  readonly type: string;
}

/** A committed row change on a table in the `supabase_realtime` publication. */
export interface RowChange {
  readonly schema: string;
  readonly table: string;
  readonly type: 'INSERT' | 'UPDATE' | 'DELETE';
  /** UTC, `YYYY-MM-DDTHH:MI:SS.mmmZ`. */
  readonly commitTimestamp: string;
  /** Every column of the table in attribute order (before per-subscriber column filtering). */
  readonly columns: readonly ChangeColumn[];
  /** New row image as typed JSON (`to_jsonb`); absent for DELETE. */
  readonly record?: Record<string, unknown>;
  /** Old row image: primary key only unless REPLICA IDENTITY FULL; absent for INSERT. */
  readonly oldRecord?: Record<string, unknown>;
  /** Primary key column names, in key order. */
  readonly primaryKey: readonly string[];
  /** Whether RLS is enabled on the table. */
  readonly rlsEnabled: boolean;
}

/** A message written by `realtime.send()` (Broadcast from the Database). */
export interface DatabaseBroadcast {
  readonly id: string;
  /** Topic name without the `realtime:` prefix. */
  readonly topic: string;
  readonly event: string;
  readonly payload: unknown;
  readonly private: boolean;
}

/** The extensions a private-channel policy can grant. */
export type ChannelExtension = 'broadcast' | 'presence';

/** Result of the RLS check on `realtime.messages` for a private channel. */
export interface ChannelPermissions {
  readonly read: { readonly broadcast: boolean; readonly presence: boolean };
}

/** What the Realtime half needs from the database half. */
export interface RealtimeDatabaseBridge {
  /** Read check for a private channel, evaluated as the token's role with its claims (rolled back). */
  authorizeChannelRead(
    claims: JwtClaims,
    topic: string,
    extensions: readonly ChannelExtension[],
  ): Promise<ChannelPermissions>;
  /** Write check for a private channel (an INSERT into `realtime.messages` as the user, rolled back). */
  authorizeChannelWrite(claims: JwtClaims, topic: string, extension: ChannelExtension): Promise<boolean>;
  /** True when `schema.table` is in the `supabase_realtime` publication (or, with `table` undefined, any table of the schema is). */
  isPublished(schema: string, table: string | undefined): Promise<boolean>;
  /** Column names of a table, or undefined when the table does not exist. */
  tableColumns(schema: string, table: string): Promise<readonly ChangeColumn[] | undefined>;
  /**
   * RLS check for one subscriber: may a role with these claims SELECT the row identified by the
   * change's primary key right now? Also returns the columns that role may select.
   */
  rowVisibleTo(
    claims: JwtClaims,
    change: RowChange,
  ): Promise<{ visible: boolean; columns: readonly string[] }>;
  /** Subscribe to committed changes of published tables, in commit order. Returns an unsubscribe. */
  onChange(listener: (change: RowChange) => void): () => void;
  /** Subscribe to `realtime.send()` messages, in commit order. Returns an unsubscribe. */
  onBroadcast(listener: (message: DatabaseBroadcast) => void): () => void;
}
