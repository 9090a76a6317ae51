/**
 * The parts of a Supabase project database that the SDK and the local stack rely on, as one
 * idempotent SQL script: the API roles, `auth.users` with the `auth.*` claim helpers, `realtime.messages`
 * with `realtime.topic()` / `realtime.send()`, the empty `supabase_realtime` publication and the
 * default grants Supabase gives the API roles.
 *
 * @remarks
 * Roles are cluster-wide, so they are created in `DO` blocks guarded by `pg_roles` checks and are granted
 * to the connecting user (so `SET ROLE anon` works without superuser). Everything else lives in the target
 * database and is created with `IF NOT EXISTS` / `CREATE OR REPLACE`, so the script can run again.
 *
 * @packageDocumentation
 */

/**
 * The SQL that installs Supabase's shape into a database. Safe to run more than once, and safe to run
 * concurrently against different databases of the same cluster when used through {@link installSupabaseShape}
 * (which retries the rare catalog races between role creations).
 */
export const SUPABASE_SHAPE_SQL = `
-- ---------------------------------------------------------------------------------------------
-- API roles (cluster-wide). anon / authenticated / service_role never log in; the connecting user
-- becomes them with SET ROLE, as PostgREST's "authenticator" does.
-- ---------------------------------------------------------------------------------------------
do $shape$
begin
  if not exists (select 1 from pg_catalog.pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select 1 from pg_catalog.pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select 1 from pg_catalog.pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select 1 from pg_catalog.pg_roles where rolname = 'authenticator') then
    create role authenticator nologin noinherit;
  end if;
end
$shape$;

do $shape$
declare
  r text;
begin
  foreach r in array array['anon', 'authenticated', 'service_role'] loop
    if not pg_catalog.pg_has_role(current_user, r, 'MEMBER') then
      execute pg_catalog.format('grant %I to %I', r, current_user);
    end if;
    if not pg_catalog.pg_has_role('authenticator', r, 'MEMBER') then
      execute pg_catalog.format('grant %I to authenticator', r);
    end if;
  end loop;
end
$shape$;

-- ---------------------------------------------------------------------------------------------
-- public: the API roles may use it; objects created later by the connecting user are granted to them.
-- ---------------------------------------------------------------------------------------------
grant usage on schema public to anon, authenticated, service_role;
grant all on all tables in schema public to anon, authenticated, service_role;
grant all on all sequences in schema public to anon, authenticated, service_role;
grant all on all functions in schema public to anon, authenticated, service_role;
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- auth: users and the claim helpers policies call.
-- ---------------------------------------------------------------------------------------------
create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;

create table if not exists auth.users (
  instance_id uuid,
  id uuid primary key default gen_random_uuid(),
  aud varchar(255) default 'authenticated',
  role varchar(255) default 'authenticated',
  email varchar(255),
  encrypted_password varchar(255),
  email_confirmed_at timestamptz,
  phone text,
  raw_app_meta_data jsonb not null default '{}'::jsonb,
  raw_user_meta_data jsonb not null default '{}'::jsonb,
  is_anonymous boolean not null default false,
  last_sign_in_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create unique index if not exists users_email_key on auth.users (email) where email is not null;

-- request.jwt.claim.<name> (older PostgREST, Realtime's own checks) wins over request.jwt.claims (PostgREST 12+).
create or replace function auth.uid() returns uuid
language sql stable
as $fn$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$fn$;

create or replace function auth.role() returns text
language sql stable
as $fn$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$fn$;

create or replace function auth.email() returns text
language sql stable
as $fn$
  select coalesce(
    nullif(current_setting('request.jwt.claim.email', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
  )::text
$fn$;

create or replace function auth.jwt() returns jsonb
language sql stable
as $fn$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$fn$;

-- ---------------------------------------------------------------------------------------------
-- realtime: messages (Broadcast from the Database, private-channel policies), topic(), send().
-- ---------------------------------------------------------------------------------------------
create schema if not exists realtime;
grant usage on schema realtime to anon, authenticated, service_role;

create table if not exists realtime.messages (
  id uuid not null default gen_random_uuid(),
  topic text not null,
  extension text not null,
  payload jsonb,
  event text,
  private boolean default false,
  inserted_at timestamp not null default now(),
  updated_at timestamp not null default now(),
  primary key (id, inserted_at)
);
create index if not exists messages_inserted_at_topic_index on realtime.messages (inserted_at desc, topic);
-- As on Supabase: RLS on, no policies, so private channels are closed until the project adds policies.
alter table realtime.messages enable row level security;
grant select, insert, update on realtime.messages to anon, authenticated, service_role;

-- The topic being authorized; set by the Realtime server (and by realtime.send) with set_config(..., true).
create or replace function realtime.topic() returns text
language sql stable
as $fn$
  select nullif(current_setting('realtime.topic', true), '')::text
$fn$;

-- Broadcast from the Database. Runs with the caller's rights, like Supabase's; a failed insert is
-- reported as a WARNING and never aborts the caller's transaction.
create or replace function realtime.send(payload jsonb, event text, topic text, private boolean default true)
returns void
language plpgsql volatile
set search_path = ''
as $fn$
begin
  begin
    perform pg_catalog.set_config('realtime.topic', topic, true);
    insert into realtime.messages (payload, event, topic, private, extension)
    values (payload, event, topic, private, 'broadcast');
  exception when others then
    raise warning 'ErrorSendingBroadcastMessage: %', sqlerrm;
  end;
end
$fn$;
grant execute on function realtime.topic() to anon, authenticated, service_role;
grant execute on function realtime.send(jsonb, text, text, boolean) to anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- The publication postgres_changes reads; empty, as on a new project.
-- ---------------------------------------------------------------------------------------------
do $shape$
begin
  if not exists (select 1 from pg_catalog.pg_publication where pubname = 'supabase_realtime') then
    create publication supabase_realtime;
  end if;
end
$shape$;
`;

/** The smallest client {@link installSupabaseShape} needs: a `pg` `Client`, `Pool` or `PoolClient` fits. */
export interface ShapeQueryable {
  query(sql: string): Promise<unknown>;
}

/** SQLSTATEs of catalog races between concurrent installs on one cluster (roles are cluster-wide). */
const RETRYABLE_CODES = new Set(['23505', '42710', 'XX000', '40001', '40P01']);
const MAX_ATTEMPTS = 5;

/**
 * Install Supabase's shape ({@link SUPABASE_SHAPE_SQL}) into the database `db` is connected to.
 *
 * @remarks
 * The script is sent as one simple-protocol query, so it applies atomically. Two installs into different
 * databases of one cluster can race on the shared role catalog; such failures are retried a few times.
 *
 * @example
 * ```ts
 * const client = new pg.Client({ connectionString });
 * await client.connect();
 * await installSupabaseShape(client);
 * ```
 */
export async function installSupabaseShape(db: ShapeQueryable): Promise<void> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      await db.query(SUPABASE_SHAPE_SQL);
      return;
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (attempt >= MAX_ATTEMPTS || typeof code !== 'string' || !RETRYABLE_CODES.has(code)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20 * attempt));
    }
  }
}
