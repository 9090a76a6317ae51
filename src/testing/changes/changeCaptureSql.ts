/**
 * SQL of the trigger-based change capture that stands in for logical replication in the local stack.
 *
 * Everything lives in the private schema `_sm_stack`:
 * - `changes`: a queue of captured row changes and `realtime.messages` broadcasts, tagged with the writing
 *   transaction's id;
 * - `capture_change()`: AFTER INSERT/UPDATE/DELETE row trigger put on every table of the `supabase_realtime`
 *   publication; it queues the row image with its column types and notifies `_sm_stack_changes` with the
 *   transaction id (one notification per transaction: Postgres folds duplicates);
 * - `capture_broadcast()`: the same for `realtime.messages` rows with `extension = 'broadcast'`
 *   (what `realtime.send()` writes);
 * - `sync_publication()`: puts the trigger on published tables and takes it off unpublished ones;
 * - an event trigger that runs the sync after publication/table DDL and notifies `_sm_stack_ddl`.
 *
 * Notifications are delivered at commit, in commit order, so reading a transaction's queued rows when its
 * notification arrives yields changes in commit order.
 *
 * @packageDocumentation
 */

/** Channel notified with a transaction id when that transaction queued changes. */
export const CHANGES_CHANNEL = '_sm_stack_changes';
/** Channel notified with the command tag after DDL (used to refresh caches). */
export const DDL_CHANNEL = '_sm_stack_ddl';
/** Name of the capture trigger on published tables. */
export const CAPTURE_TRIGGER = '_sm_stack_capture';

/** Idempotent install of the capture schema, functions and triggers (except the event trigger). */
export const CHANGE_CAPTURE_SQL = `
create schema if not exists _sm_stack;
revoke all on schema _sm_stack from public;

create table if not exists _sm_stack.changes (
  id bigserial primary key,
  xid bigint not null default pg_catalog.txid_current(),
  kind text not null check (kind in ('change', 'broadcast')),
  payload jsonb not null
);
create index if not exists changes_xid_idx on _sm_stack.changes (xid);

-- Column names of a relation's primary key (or replica-identity index), in key order.
create or replace function _sm_stack.key_columns(rel oid, replica_identity boolean)
returns text[]
language sql stable
set search_path = pg_catalog, pg_temp
as $fn$
  select coalesce(array_agg(a.attname::text order by k.n), '{}'::text[])
  from pg_index i
  cross join lateral unnest(i.indkey::int2[]) with ordinality as k(attnum, n)
  join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
  where i.indrelid = rel and case when replica_identity then i.indisreplident else i.indisprimary end
$fn$;

create or replace function _sm_stack.capture_change()
returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
  v_replident "char";
  v_rls boolean;
  v_columns jsonb;
  v_pk text[];
  v_identity text[];
  v_old jsonb;
begin
  select c.relreplident, c.relrowsecurity into v_replident, v_rls from pg_class c where c.oid = tg_relid;
  select coalesce(jsonb_agg(jsonb_build_object('name', a.attname, 'type', t.typname) order by a.attnum), '[]'::jsonb)
    into v_columns
    from pg_attribute a join pg_type t on t.oid = a.atttypid
   where a.attrelid = tg_relid and a.attnum > 0 and not a.attisdropped;
  v_pk := _sm_stack.key_columns(tg_relid, false);
  if tg_op <> 'INSERT' then
    v_old := to_jsonb(old);
    if v_replident = 'n' then
      v_old := '{}'::jsonb;
    elsif v_replident <> 'f' then
      v_identity := case when v_replident = 'i' then _sm_stack.key_columns(tg_relid, true) else v_pk end;
      select coalesce(jsonb_object_agg(e.key, e.value), '{}'::jsonb) into v_old
        from jsonb_each(v_old) as e where e.key = any (v_identity);
    end if;
  end if;
  insert into _sm_stack.changes (kind, payload) values ('change', jsonb_build_object(
    'schema', tg_table_schema,
    'table', tg_table_name,
    'type', tg_op,
    'commit_timestamp', to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    'columns', v_columns,
    'record', case when tg_op = 'DELETE' then null else to_jsonb(new) end,
    'old_record', v_old,
    'primary_key', to_jsonb(v_pk),
    'rls_enabled', v_rls
  ));
  perform pg_notify('${CHANGES_CHANNEL}', txid_current()::text);
  return null;
end
$fn$;

create or replace function _sm_stack.capture_broadcast()
returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $fn$
begin
  insert into _sm_stack.changes (kind, payload) values ('broadcast', jsonb_build_object(
    'id', new.id,
    'topic', new.topic,
    'event', new.event,
    'payload', new.payload,
    'private', coalesce(new.private, false)
  ));
  perform pg_notify('${CHANGES_CHANNEL}', txid_current()::text);
  return null;
end
$fn$;

drop trigger if exists ${CAPTURE_TRIGGER} on realtime.messages;
create trigger ${CAPTURE_TRIGGER} after insert on realtime.messages
  for each row when (new.extension = 'broadcast') execute function _sm_stack.capture_broadcast();

-- Trigger on every table of supabase_realtime, none elsewhere. Returns how many triggers it changed.
create or replace function _sm_stack.sync_publication()
returns integer
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
  r record;
  changed integer := 0;
begin
  for r in
    select c.oid::regclass as rel
      from pg_publication_tables pt
      join pg_namespace n on n.nspname = pt.schemaname
      join pg_class c on c.relnamespace = n.oid and c.relname = pt.tablename
     where pt.pubname = 'supabase_realtime'
       and not exists (select 1 from pg_trigger t where t.tgrelid = c.oid and t.tgname = '${CAPTURE_TRIGGER}')
  loop
    execute format('create trigger ${CAPTURE_TRIGGER} after insert or update or delete on %s
                    for each row execute function _sm_stack.capture_change()', r.rel);
    changed := changed + 1;
  end loop;
  for r in
    select t.tgrelid::regclass as rel
      from pg_trigger t
      join pg_class c on c.oid = t.tgrelid
      join pg_namespace n on n.oid = c.relnamespace
     where t.tgname = '${CAPTURE_TRIGGER}'
       and t.tgrelid <> 'realtime.messages'::regclass
       and not exists (select 1 from pg_publication_tables pt
                        where pt.pubname = 'supabase_realtime'
                          and pt.schemaname = n.nspname and pt.tablename = c.relname)
  loop
    execute format('drop trigger ${CAPTURE_TRIGGER} on %s', r.rel);
    changed := changed + 1;
  end loop;
  return changed;
end
$fn$;

create or replace function _sm_stack.on_ddl()
returns event_trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $fn$
begin
  if tg_tag in ('CREATE PUBLICATION', 'ALTER PUBLICATION', 'DROP PUBLICATION', 'CREATE TABLE',
                'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE') then
    perform _sm_stack.sync_publication();
  end if;
  perform pg_notify('${DDL_CHANNEL}', tg_tag);
end
$fn$;

select _sm_stack.sync_publication();
`;

/** Creates the event trigger (superuser only; without it the feed re-syncs on demand and periodically). */
export const DDL_EVENT_TRIGGER_SQL = `
do $do$
begin
  if not exists (select 1 from pg_catalog.pg_event_trigger where evtname = '_sm_stack_ddl') then
    create event trigger _sm_stack_ddl on ddl_command_end execute function _sm_stack.on_ddl();
  end if;
end
$do$;
`;
