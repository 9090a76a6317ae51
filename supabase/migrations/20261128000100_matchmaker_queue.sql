-- =============================================================================================
-- supabase-matchmaker: queue tier (schema version 20261128000100)
-- =============================================================================================
--
-- PURPOSE
--   A server-side matchmaking queue for Supabase: a user joins with optional criteria, is paired
--   FIFO with a compatible user, and both are told through Broadcast from the Database on a
--   private per-user topic. Everything lives in schema `matchmaker`; the client-facing entry points
--   are thin SECURITY DEFINER wrappers in `public` so PostgREST exposes them as RPCs.
--
-- ENTRY POINTS (PostgREST: POST /rest/v1/rpc/<name>)
--   matchmaker_join(criteria jsonb default '{}', ticket_id uuid default null)    -> jsonb  authenticated
--   matchmaker_cancel(ticket_id uuid default null)                               -> jsonb  authenticated
--   matchmaker_heartbeat(ticket_id uuid default null)                            -> jsonb  authenticated
--   matchmaker_state(ticket_id uuid default null)                                -> jsonb  authenticated (STABLE)
--   matchmaker_process(max_pairs integer default 1000, resume_after text default null) -> jsonb  service_role
--   CALL matchmaker.run_maintenance(run_for interval default null, every interval default '5 seconds')
--                                                                      (owner / pg_cron; COMMITs per chunk)
--   matchmaker.schedule_maintenance(every interval default '5 seconds')  -> text  (owner; needs pg_cron)
--   matchmaker.unschedule_maintenance()                                  -> boolean
--   matchmaker.forget_user(user_id uuid)                                 -> jsonb (owner / service_role; GDPR)
--   matchmaker.is_eligible(a uuid, b uuid) -> boolean   HOST HOOK, replace with CREATE OR REPLACE
--
--   The user RPCs act only for auth.uid() (the `sub` of request.jwt.claims). `ticket_id` doubles as an
--   idempotency key: a join retried with the same ticket_id returns that ticket (open or finished) and
--   never creates a second one. Without ticket_id, a join while the user has an open ticket with the
--   same criteria returns that ticket; with different criteria it supersedes it.
--
-- RESULT SHAPE (every user RPC returns one JSON object)
--   {
--     "status":  "idle" | "waiting" | "matched" | "cancelled" | "expired" | "disconnected" | "superseded",
--     "result":  join: "created" | "existing"; cancel: "cancelled" | "already_matched" | "not_waiting";
--                heartbeat: "alive" | "not_waiting"; state: "state",
--     "ticket":  null | { "id", "criteria", "pool", "enqueued_at", "expires_at", "last_seen_at",
--                         "widens_at", "ended_at" },          -- ended_at only for finished tickets
--     "match":   null | { "id", "partner_id", "created_at", "criteria" },
--     "reason":  null | "user" | "ttl" | "heartbeat_timeout" | "criteria_changed",
--     "topic":   "matchmaker:user:<uid>",                     -- private Realtime topic to listen on
--     "heartbeat_interval_ms": integer | null,                -- call matchmaker_heartbeat this often
--     "server_time": timestamptz
--   }
--   matchmaker_process returns { "pairs", "expired", "disconnected", "pruned", "pools", "more", "resume_after" }.
--
-- NOTIFICATIONS (realtime.send, private topic 'matchmaker:user:<uid>', one per terminal outcome)
--   event 'matched':   { "type":"matched", "ticket_id", "user_id", "match": {id, partner_id, created_at, criteria} }
--   event 'cancelled': { "type":"cancelled", "ticket_id", "user_id", "outcome", "reason", "at" }
--                      outcome: cancelled | expired | disconnected | superseded
--   A user may read only their own topic (RLS policy matchmaker_user_topic_read on realtime.messages).
--   Alternative channel: matchmaker.ticket_history is in publication supabase_realtime; subscribe to
--   INSERT with filter user_id=eq.<uid> (RLS: own rows). Delivery is at most once: after every
--   (re)subscribe, call matchmaker_state() to reconcile.
--
-- ERRORS (SQLSTATE, message prefix 'matchmaker:')
--   42501  'matchmaker: not authenticated'        auth.uid() is null (anon key / no sub claim)
--   42501  'matchmaker: service role required'     processor called with a non-service JWT
--   42501  permission denied for function ...      (Postgres) role lacks EXECUTE (anon; authenticated->process)
--   22023  'matchmaker: invalid criteria: ...'    criteria not an object, undeclared key, bad value
--   22023  'matchmaker: invalid argument: ...'    e.g. max_pairs out of range
--   MM409  'matchmaker: ticket belongs to another user'   ticket_id of someone else
--   55000  'matchmaker: ...'                       migration prerequisites / pg_cron missing
--   PostgREST maps 42501 -> 401 (anon) / 403, 22023 and MM409 -> 400.
--
-- DESIGN AND INVARIANTS
--   * Hot table `tickets` holds OPEN tickets only; finished ones are deleted and recorded once in
--     `ticket_history` (insert-only). One open ticket per user: UNIQUE (user_id).
--   * Pools. Criteria keys are declared in `settings.criteria_keys`. `exact` keys form the pool (the
--     canonical JSON text of the exact values); `flexible` keys may be "any" ('*'), and may widen to
--     '*' after `widen_after`. Two tickets are compatible iff they share a pool and, for every
--     flexible key, the values are equal or either is '*' (after widening at the decision time).
--     Compatibility never crosses pools, so one lock per pool serialises everything that can pair.
--   * Locks (namespaced advisory xact locks), always in this order, so no deadlock is possible:
--       user lock (own user only, at most one)  ->  pool locks (sorted by key)  ->  ticket rows.
--     Every INSERT/DELETE of a ticket holds its pool lock. A heartbeat that only refreshes
--     last_seen_at takes just the row lock (HOT update, no other lock held).
--   * No stranded pairs: a join takes its pool lock BEFORE inserting, and every statement after the
--     lock sees all earlier holders' commits (READ COMMITTED, fresh snapshot per statement). So the
--     waiting tickets of a pool are pairwise incompatible after every commit: a join either claims
--     the oldest compatible waiting ticket or waits itself. Compatibility that appears later
--     (widening, a stale ticket revived, a host hook changing its mind) is picked up by the
--     ticket's next heartbeat (clients schedule one at `widens_at`) and by the batch processor.
--   * FIFO: matching equals processing tickets one by one in enqueue order (`seq`), each claiming
--     the oldest waiting ticket that is compatible, live and eligible. The per-join path, the
--     heartbeat path and the batch path all implement exactly this rule.
--   * Dead tuples and old snapshots: deleted tickets leave dead index entries that cannot be
--     removed while any old snapshot exists. Claims never walk them: each pool keeps an
--     insert-only log of its head (`pool_heads`: a lower bound on the seq of its open tickets),
--     read with one backward index probe, and every scan starts there.
--   * Time: decisions use clock_timestamp() taken after the locks, never now().
--   * Plans: the entry functions run with enable_seqscan/enable_bitmapscan off, so every bounded
--     query uses its ordered index scan (and stops early) even before the tables are analyzed;
--     scans over tickets are keyset batches with LIMIT.
--   * Expiry: tickets expire after settings.ticket_ttl and are skipped by claims once expired or
--     once their heartbeat is older than settings.heartbeat_timeout; the sweeper (pg_cron / the
--     processor) and claims that pass them move them to history and notify the user.
--   * Security: the public wrappers (and forget_user) are SECURITY DEFINER; every function has
--     search_path = '' and fully qualified names; EXECUTE is revoked from PUBLIC and granted
--     explicitly; RLS is enabled on every table; nothing is granted to anon.
--   * Writers: insert tickets only through these functions (or while holding the pool lock, as
--     run_maintenance does): a ticket inserted concurrently without the lock could get a seq below
--     the pool's logged head and be skipped. Bulk loads into an idle queue are fine. matches.* and ticket_history.* have no foreign keys, so deleting a match
--     (moderation, GDPR) never blocks.
-- =============================================================================================

-- ---------------------------------------------------------------------------------------------
-- Prerequisites: Supabase's roles, auth.uid(), realtime.send()/topic()/messages.
-- ---------------------------------------------------------------------------------------------
do $prereq$
declare
  v_missing text[] := '{}';
  r text;
begin
  foreach r in array array['anon', 'authenticated', 'service_role'] loop
    if not exists (select 1 from pg_catalog.pg_roles where rolname = r) then
      v_missing := v_missing || ('role ' || r);
    end if;
  end loop;
  if pg_catalog.to_regprocedure('auth.uid()') is null then
    v_missing := v_missing || 'function auth.uid()'::text;
  end if;
  if pg_catalog.to_regprocedure('realtime.send(jsonb, text, text, boolean)') is null then
    v_missing := v_missing || 'function realtime.send(jsonb, text, text, boolean)'::text;
  end if;
  if pg_catalog.to_regprocedure('realtime.topic()') is null then
    v_missing := v_missing || 'function realtime.topic()'::text;
  end if;
  if pg_catalog.to_regclass('realtime.messages') is null then
    v_missing := v_missing || 'table realtime.messages'::text;
  end if;
  if pg_catalog.cardinality(v_missing) > 0 then
    raise exception 'matchmaker: this database lacks %', pg_catalog.array_to_string(v_missing, ', ')
      using errcode = '55000',
            hint = 'Apply the matchmaker migrations to a Supabase project database (or a local stack with Supabase''s shape installed).';
  end if;
end
$prereq$;

create schema if not exists matchmaker;
comment on schema matchmaker is 'supabase-matchmaker queue tier. Do not edit objects by hand; add migrations.';
revoke all on schema matchmaker from public;
revoke all on schema matchmaker from anon;
grant usage on schema matchmaker to authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Migration ledger (also written by the TypeScript runner; recorded here too so the Supabase CLI
-- path leaves the same trace).
-- ---------------------------------------------------------------------------------------------
create table if not exists matchmaker.schema_migrations (
  version text primary key,
  name text not null,
  checksum text,
  applied_at timestamptz not null default pg_catalog.clock_timestamp()
);
alter table matchmaker.schema_migrations enable row level security;
revoke all on matchmaker.schema_migrations from public, anon, authenticated, service_role;
grant select on matchmaker.schema_migrations to service_role;
insert into matchmaker.schema_migrations (version, name)
values ('20261128000100', 'matchmaker_queue')
on conflict (version) do nothing;

-- ---------------------------------------------------------------------------------------------
-- Settings: one row. The host changes it with UPDATE matchmaker.settings SET ...
--   criteria_keys: [{"key":"lang"}, {"key":"tz","match":"flexible","widen_after":"10 seconds"},
--                   {"key":"minutes","default":"25"}]
--     key         ^[a-z][a-z0-9_]{0,31}$, unique
--     match       'exact' (default: part of the pool, never any/widened) | 'flexible'
--     widen_after interval text, flexible keys only: the key counts as any ('*') once the ticket
--                 has waited that long
--     default     value used when a ticket omits the key (exact: omitted means its own pool)
-- ---------------------------------------------------------------------------------------------
create table matchmaker.settings (
  singleton boolean primary key default true check (singleton),
  ticket_ttl interval not null default interval '5 minutes' check (ticket_ttl > interval '0'),
  heartbeat_timeout interval default interval '30 seconds'
    check (heartbeat_timeout is null or heartbeat_timeout > interval '0'),
  criteria_keys jsonb not null default '[]'::jsonb,
  batch_pairs integer not null default 1000 check (batch_pairs between 1 and 100000),
  sweep_batch integer not null default 1000 check (sweep_batch between 1 and 100000),
  max_pools_per_step integer not null default 64 check (max_pools_per_step between 1 and 1000),
  claim_retire_limit integer not null default 32 check (claim_retire_limit between 0 and 1000),
  history_retention interval default interval '30 days'
    check (history_retention is null or history_retention > interval '0'),
  -- Derived by the validation trigger from criteria_keys; do not set by hand.
  widen jsonb not null default '{}'::jsonb,
  updated_at timestamptz not null default pg_catalog.clock_timestamp()
);
comment on table matchmaker.settings is
  'Queue tier settings (one row). ticket_ttl: max search time; heartbeat_timeout: tickets not seen for this long are skipped and retired as disconnected (null disables); criteria_keys: declared criteria (see migration header).';

create function matchmaker._validate_settings() returns trigger
language plpgsql
set search_path = ''
as $fn$
declare
  v_spec jsonb;
  v_key text;
  v_match text;
  v_seen text[] := '{}';
  v_widen jsonb := '{}'::jsonb;
  v_after interval;
begin
  if pg_catalog.jsonb_typeof(new.criteria_keys) <> 'array' then
    raise exception 'matchmaker: invalid settings: criteria_keys must be a JSON array' using errcode = '22023';
  end if;
  for v_spec in select e from pg_catalog.jsonb_array_elements(new.criteria_keys) as e loop
    if pg_catalog.jsonb_typeof(v_spec) <> 'object' then
      raise exception 'matchmaker: invalid settings: each criteria key must be an object' using errcode = '22023';
    end if;
    v_key := v_spec ->> 'key';
    if v_key is null or v_key !~ '^[a-z][a-z0-9_]{0,31}$' then
      raise exception 'matchmaker: invalid settings: criteria key name % must match ^[a-z][a-z0-9_]{0,31}$',
        coalesce(v_key, 'null') using errcode = '22023';
    end if;
    if v_key = any (v_seen) then
      raise exception 'matchmaker: invalid settings: criteria key % declared twice', v_key using errcode = '22023';
    end if;
    v_seen := v_seen || v_key;
    v_match := coalesce(v_spec ->> 'match', 'exact');
    if v_match not in ('exact', 'flexible') then
      raise exception 'matchmaker: invalid settings: criteria key % has match %, expected exact or flexible',
        v_key, v_match using errcode = '22023';
    end if;
    if v_spec ? 'default' and pg_catalog.jsonb_typeof(v_spec -> 'default') not in ('string', 'null') then
      raise exception 'matchmaker: invalid settings: default of % must be a string', v_key using errcode = '22023';
    end if;
    if v_match = 'exact' and (v_spec ->> 'default') in ('*', 'any') then
      raise exception 'matchmaker: invalid settings: exact key % cannot default to any', v_key using errcode = '22023';
    end if;
    if v_spec ? 'widen_after' and pg_catalog.jsonb_typeof(v_spec -> 'widen_after') <> 'null' then
      if v_match <> 'flexible' then
        raise exception 'matchmaker: invalid settings: widen_after needs "match": "flexible" (key %)', v_key
          using errcode = '22023';
      end if;
      begin
        v_after := (v_spec ->> 'widen_after')::interval;
      exception when others then
        raise exception 'matchmaker: invalid settings: widen_after of % is not an interval', v_key using errcode = '22023';
      end;
      if v_after <= interval '0' then
        raise exception 'matchmaker: invalid settings: widen_after of % must be positive', v_key using errcode = '22023';
      end if;
      v_widen := v_widen || pg_catalog.jsonb_build_object(v_key, v_after::text);
    end if;
  end loop;
  new.widen := v_widen;
  new.updated_at := pg_catalog.clock_timestamp();
  return new;
end
$fn$;

create trigger settings_validate before insert or update on matchmaker.settings
for each row execute function matchmaker._validate_settings();

insert into matchmaker.settings default values;

alter table matchmaker.settings enable row level security;
revoke all on matchmaker.settings from public, anon, authenticated, service_role;
grant select, update on matchmaker.settings to service_role;

-- ---------------------------------------------------------------------------------------------
-- Tickets (HOT: open tickets only).
-- ---------------------------------------------------------------------------------------------
create sequence matchmaker.ticket_seq as bigint;

create table matchmaker.tickets (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null unique,
  pool text not null,
  criteria jsonb not null,
  -- FIFO position, taken under the pool lock; also the key of pool_heads.
  seq bigint not null default pg_catalog.nextval('matchmaker.ticket_seq'),
  enqueued_at timestamptz not null default pg_catalog.clock_timestamp(),
  expires_at timestamptz not null,
  -- Unindexed on purpose: heartbeats are HOT updates that add no index entries.
  last_seen_at timestamptz not null default pg_catalog.clock_timestamp(),
  -- Next time a flexible key widens (null: nothing left to widen).
  widens_at timestamptz
) with (fillfactor = 70);
create index tickets_pool_seq_idx on matchmaker.tickets (pool, seq);
create index tickets_expires_at_idx on matchmaker.tickets (expires_at);
comment on table matchmaker.tickets is
  'Open matchmaking tickets only. Finished tickets are deleted and recorded in ticket_history. Write only through the matchmaker functions (they hold the pool lock).';

alter table matchmaker.tickets enable row level security;
revoke all on matchmaker.tickets from public, anon, authenticated, service_role;
grant select on matchmaker.tickets to authenticated, service_role;
create policy tickets_select_own on matchmaker.tickets for select to authenticated
  using (user_id = (select auth.uid()));

-- Registry of pools that ever had a ticket (insert-only, so the processor lists pools without
-- walking dead index entries). Filled by a statement trigger on tickets, whatever inserts them.
create table matchmaker.pools (
  pool text primary key,
  created_at timestamptz not null default pg_catalog.clock_timestamp()
);
alter table matchmaker.pools enable row level security;
revoke all on matchmaker.pools from public, anon, authenticated, service_role;

create function matchmaker._register_pools() returns trigger
language plpgsql
set search_path = ''
as $fn$
begin
  insert into matchmaker.pools (pool)
  select distinct n.pool from new_tickets as n
  on conflict (pool) do nothing;
  return null;
end
$fn$;
create trigger tickets_register_pools after insert on matchmaker.tickets
referencing new table as new_tickets
for each statement execute function matchmaker._register_pools();

-- When the processor last completed a pass over open tickets looking for stale heartbeats (that pass
-- is a scan of the open tickets, so it runs at most every heartbeat_timeout / 3).
create table matchmaker.maintenance_state (
  singleton boolean primary key default true check (singleton),
  stale_swept_at timestamptz not null default '-infinity'
);
insert into matchmaker.maintenance_state default values;
alter table matchmaker.maintenance_state enable row level security;
revoke all on matchmaker.maintenance_state from public, anon, authenticated, service_role;

-- Insert-only log of each pool's head: head_seq <= seq of every open ticket of the pool.
create table matchmaker.pool_heads (
  id bigint generated always as identity primary key,
  pool text not null,
  head_seq bigint not null
);
create index pool_heads_pool_id_idx on matchmaker.pool_heads (pool, id);
alter table matchmaker.pool_heads enable row level security;
revoke all on matchmaker.pool_heads from public, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- History (insert-only; one row per finished ticket) and matches.
-- ---------------------------------------------------------------------------------------------
create table matchmaker.ticket_history (
  ticket_id uuid primary key,
  user_id uuid not null,
  outcome text not null check (outcome in ('matched', 'cancelled', 'expired', 'disconnected', 'superseded')),
  reason text,
  match_id uuid,          -- no FK: a match can be deleted (moderation, GDPR) without touching history
  partner_id uuid,
  match_criteria jsonb,
  pool text not null,
  criteria jsonb not null,
  enqueued_at timestamptz not null,
  ended_at timestamptz not null
);
create index ticket_history_user_idx on matchmaker.ticket_history (user_id, ended_at desc);
create index ticket_history_ended_at_idx on matchmaker.ticket_history (ended_at);
comment on table matchmaker.ticket_history is
  'One row per finished ticket (its terminal outcome). In publication supabase_realtime: subscribe to INSERT with filter user_id=eq.<uid>.';

alter table matchmaker.ticket_history enable row level security;
revoke all on matchmaker.ticket_history from public, anon, authenticated, service_role;
grant select on matchmaker.ticket_history to authenticated, service_role;
grant delete on matchmaker.ticket_history to service_role;
create policy ticket_history_select_own on matchmaker.ticket_history for select to authenticated
  using (user_id = (select auth.uid()));

create table matchmaker.matches (
  id uuid primary key default gen_random_uuid(),
  user_a uuid not null,   -- the older ticket's user
  user_b uuid not null,
  ticket_a uuid not null,
  ticket_b uuid not null,
  pool text not null,
  criteria jsonb not null,  -- the criteria both agreed on (flexible '*' resolved to the other side's value)
  created_at timestamptz not null default pg_catalog.clock_timestamp(),
  check (user_a <> user_b)
);
create index matches_user_a_idx on matchmaker.matches (user_a, created_at desc);
create index matches_user_b_idx on matchmaker.matches (user_b, created_at desc);
comment on table matchmaker.matches is 'Matches made by the queue. Rows may be deleted freely (nothing references them).';

alter table matchmaker.matches enable row level security;
revoke all on matchmaker.matches from public, anon, authenticated, service_role;
grant select on matchmaker.matches to authenticated, service_role;
grant delete on matchmaker.matches to service_role;
create policy matches_select_own on matchmaker.matches for select to authenticated
  using (user_a = (select auth.uid()) or user_b = (select auth.uid()));

-- ---------------------------------------------------------------------------------------------
-- Host hook: may users a and b be paired? Called under the pool lock for each candidate pair (in
-- either argument order), so keep it fast and side-effect free. Replace with, for example:
--   create or replace function matchmaker.is_eligible(a uuid, b uuid) returns boolean
--   language sql stable set search_path = '' as $$
--     select not exists (select 1 from public.blocks where (blocker, blocked) in ((a, b), (b, a)))
--   $$;
-- ---------------------------------------------------------------------------------------------
create function matchmaker.is_eligible(a uuid, b uuid) returns boolean
language sql stable
set search_path = ''
as $fn$
  select true
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Internal helpers (EXECUTE revoked from PUBLIC below; called from the definer functions).
-- ---------------------------------------------------------------------------------------------

-- Lock namespaces (classid of the two-key advisory locks): 1835887474 'mmkr' migrations,
-- 1835887475 pools, 1835887476 users.
create function matchmaker._lock_user(p_user uuid) returns void
language sql volatile
set search_path = ''
as $fn$
  select pg_catalog.pg_advisory_xact_lock(1835887476, pg_catalog.hashtext(p_user::text))
$fn$;

-- Locks the pools in the global order (by lock key), each key once.
create function matchmaker._lock_pools(p_pools text[]) returns void
language plpgsql volatile
set search_path = ''
as $fn$
declare
  k integer;
begin
  for k in select distinct pg_catalog.hashtext(p) from pg_catalog.unnest(p_pools) as p where p is not null order by 1 loop
    perform pg_catalog.pg_advisory_xact_lock(1835887475, k);
  end loop;
end
$fn$;

create function matchmaker._require_user(p_user uuid) returns void
language plpgsql stable
set search_path = ''
as $fn$
begin
  if p_user is null then
    raise exception 'matchmaker: not authenticated'
      using errcode = '42501',
            hint = 'Call this function with a signed-in user''s JWT; auth.uid() is null for the anon key and service key.';
  end if;
end
$fn$;

create function matchmaker._settings() returns matchmaker.settings
language plpgsql stable
set search_path = ''
as $fn$
declare
  s matchmaker.settings;
begin
  select * into s from matchmaker.settings where singleton;
  if not found then
    raise exception 'matchmaker: settings row missing' using errcode = '55000',
      hint = 'insert into matchmaker.settings default values;';
  end if;
  return s;
end
$fn$;

-- Validates criteria against the declared keys; returns the pool key and the normalised criteria
-- (exact keys with a value + every flexible key, '*' meaning any).
create function matchmaker._normalize_criteria(p_criteria jsonb, p_keys jsonb, out pool text, out criteria jsonb)
language plpgsql stable
set search_path = ''
as $fn$
declare
  v_in jsonb := coalesce(p_criteria, '{}'::jsonb);
  v_key text;
  v_val jsonb;
  v_text text;
  v_spec jsonb;
  v_exact jsonb := '{}'::jsonb;
  v_flex jsonb := '{}'::jsonb;
  v_declared text[];
begin
  if pg_catalog.jsonb_typeof(v_in) = 'null' then
    v_in := '{}'::jsonb;
  end if;
  if pg_catalog.jsonb_typeof(v_in) <> 'object' then
    raise exception 'matchmaker: invalid criteria: expected a JSON object, got %', pg_catalog.jsonb_typeof(v_in)
      using errcode = '22023';
  end if;
  select coalesce(pg_catalog.array_agg(e ->> 'key'), '{}') into v_declared
  from pg_catalog.jsonb_array_elements(p_keys) as e;
  for v_key, v_val in select e.key, e.value from pg_catalog.jsonb_each(v_in) as e loop
    if not (v_key = any (v_declared)) then
      raise exception 'matchmaker: invalid criteria: unknown key "%"', v_key
        using errcode = '22023',
              hint = case when pg_catalog.cardinality(v_declared) = 0
                then 'No criteria keys are declared; declare them in matchmaker.settings.criteria_keys.'
                else 'Declared keys: ' || pg_catalog.array_to_string(v_declared, ', ') end;
    end if;
    if pg_catalog.jsonb_typeof(v_val) not in ('string', 'number', 'boolean', 'null') then
      raise exception 'matchmaker: invalid criteria: value of "%" must be a string, number or boolean', v_key
        using errcode = '22023';
    end if;
    if pg_catalog.length(v_val #>> '{}') > 64 then
      raise exception 'matchmaker: invalid criteria: value of "%" is longer than 64 characters', v_key
        using errcode = '22023';
    end if;
  end loop;
  for v_spec in select e from pg_catalog.jsonb_array_elements(p_keys) as e loop
    v_key := v_spec ->> 'key';
    v_text := coalesce(v_in ->> v_key, v_spec ->> 'default');
    if coalesce(v_spec ->> 'match', 'exact') = 'flexible' then
      if v_text is null or v_text in ('*', 'any') then
        v_text := '*';
      end if;
      v_flex := v_flex || pg_catalog.jsonb_build_object(v_key, v_text);
    elsif v_text is not null then
      if v_text in ('*', 'any') then
        raise exception 'matchmaker: invalid criteria: "%" is an exact key and cannot be any', v_key
          using errcode = '22023', hint = 'Omit the key, or declare it with "match": "flexible".';
      end if;
      v_exact := v_exact || pg_catalog.jsonb_build_object(v_key, v_text);
    end if;
  end loop;
  pool := v_exact::text;
  criteria := v_exact || v_flex;
end
$fn$;

-- Criteria as they count at p_now: flexible keys whose widen_after has elapsed become '*'.
create function matchmaker._effective(p_criteria jsonb, p_enqueued_at timestamptz, p_now timestamptz, p_widen jsonb)
returns jsonb
language sql immutable parallel safe
set search_path = ''
as $fn$
  select case
    when p_widen = '{}'::jsonb or p_criteria = '{}'::jsonb then p_criteria
    else (
      select coalesce(pg_catalog.jsonb_object_agg(e.key,
        case when p_widen ? e.key and e.value <> '"*"'::jsonb
                  and p_enqueued_at + (p_widen ->> e.key)::interval <= p_now
             then '"*"'::jsonb else e.value end), '{}'::jsonb)
      from pg_catalog.jsonb_each(p_criteria) as e)
  end
$fn$;

-- Next widening instant after p_now (null when nothing is left to widen).
create function matchmaker._next_widen(p_criteria jsonb, p_enqueued_at timestamptz, p_now timestamptz, p_widen jsonb)
returns timestamptz
language sql immutable parallel safe
set search_path = ''
as $fn$
  select pg_catalog.min(p_enqueued_at + (p_widen ->> e.key)::interval)
  from pg_catalog.jsonb_each(p_criteria) as e
  where p_widen ? e.key and e.value <> '"*"'::jsonb
    and p_enqueued_at + (p_widen ->> e.key)::interval > p_now
$fn$;

-- Compatible iff every key present in both is equal or '*' on either side.
create function matchmaker._compatible(a jsonb, b jsonb) returns boolean
language sql immutable parallel safe
set search_path = ''
as $fn$
  select a = b or a = '{}'::jsonb or b = '{}'::jsonb or not exists (
    select 1
    from pg_catalog.jsonb_each(a) as x
    join pg_catalog.jsonb_each(b) as y on y.key = x.key
    where x.value <> y.value and x.value <> '"*"'::jsonb and y.value <> '"*"'::jsonb)
$fn$;

-- The criteria both sides agree on: '*' resolved to the other side's value.
create function matchmaker._meet(a jsonb, b jsonb) returns jsonb
language sql immutable parallel safe
set search_path = ''
as $fn$
  select coalesce(pg_catalog.jsonb_object_agg(coalesce(x.key, y.key),
    case when x.key is null then y.value
         when y.key is null then x.value
         when x.value = '"*"'::jsonb then y.value
         else x.value end), '{}'::jsonb)
  from pg_catalog.jsonb_each(a) as x
  full join pg_catalog.jsonb_each(b) as y on y.key = x.key
$fn$;

-- Lower bound of the seq of every open ticket in the pool (0 when the pool has no log yet).
create function matchmaker._pool_hint(p_pool text) returns bigint
language sql stable
set search_path = ''
as $fn$
  select coalesce((select h.head_seq from matchmaker.pool_heads as h
                   where h.pool = p_pool order by h.id desc limit 1), 0)
$fn$;

-- After deleting tickets of a pool (pool lock held): advance the pool's head log.
create function matchmaker._settle_pool(p_pool text, p_hint bigint) returns void
language plpgsql volatile
set search_path = ''
as $fn$
declare
  v_head bigint;
begin
  select t.seq into v_head from matchmaker.tickets as t
  where t.pool = p_pool and t.seq >= p_hint order by t.seq limit 1;
  if v_head is null then
    -- Empty pool: every later ticket of this pool takes a seq after this one (pool lock order).
    v_head := pg_catalog.nextval('matchmaker.ticket_seq');
  end if;
  if v_head > p_hint then
    insert into matchmaker.pool_heads (pool, head_seq) values (p_pool, v_head);
  end if;
end
$fn$;

create function matchmaker._topic(p_user uuid) returns text
language sql immutable parallel safe
set search_path = ''
as $fn$
  select 'matchmaker:user:' || p_user::text
$fn$;

create function matchmaker._notify(p_user uuid, p_event text, p_payload jsonb) returns void
language plpgsql volatile
set search_path = ''
as $fn$
begin
  perform realtime.send(p_payload, p_event, matchmaker._topic(p_user), true);
end
$fn$;

create function matchmaker._heartbeat_interval_ms(s matchmaker.settings) returns integer
language sql immutable
set search_path = ''
as $fn$
  select case when s.heartbeat_timeout is null then null
    else greatest(1000, (extract(epoch from s.heartbeat_timeout) * 1000 / 3)::integer) end
$fn$;

create function matchmaker._ticket_json(t matchmaker.tickets) returns jsonb
language sql stable
set search_path = ''
as $fn$
  select pg_catalog.jsonb_build_object(
    'id', t.id, 'criteria', t.criteria, 'pool', t.pool, 'enqueued_at', t.enqueued_at,
    'expires_at', t.expires_at, 'last_seen_at', t.last_seen_at, 'widens_at', t.widens_at)
$fn$;

create function matchmaker._envelope(p_user uuid, p_status text, p_result text, p_ticket jsonb, p_match jsonb,
  p_reason text, s matchmaker.settings) returns jsonb
language sql stable
set search_path = ''
as $fn$
  select pg_catalog.jsonb_build_object(
    'status', p_status, 'result', p_result, 'ticket', p_ticket, 'match', p_match, 'reason', p_reason,
    'topic', matchmaker._topic(p_user), 'heartbeat_interval_ms', matchmaker._heartbeat_interval_ms(s),
    'server_time', pg_catalog.clock_timestamp())
$fn$;

create function matchmaker._waiting_state(t matchmaker.tickets, p_result text, s matchmaker.settings) returns jsonb
language sql stable
set search_path = ''
as $fn$
  select matchmaker._envelope(t.user_id, 'waiting', p_result, matchmaker._ticket_json(t), null, null, s)
$fn$;

create function matchmaker._history_state(h matchmaker.ticket_history, p_result text, s matchmaker.settings)
returns jsonb
language sql stable
set search_path = ''
as $fn$
  select matchmaker._envelope(h.user_id, h.outcome, p_result,
    pg_catalog.jsonb_build_object('id', h.ticket_id, 'criteria', h.criteria, 'pool', h.pool,
      'enqueued_at', h.enqueued_at, 'ended_at', h.ended_at),
    case when h.outcome = 'matched' then pg_catalog.jsonb_build_object('id', h.match_id,
      'partner_id', h.partner_id, 'created_at', h.ended_at, 'criteria', h.match_criteria) end,
    h.reason, s)
$fn$;

create function matchmaker._idle_state(p_user uuid, p_result text, s matchmaker.settings) returns jsonb
language sql stable
set search_path = ''
as $fn$
  select matchmaker._envelope(p_user, 'idle', p_result, null, null, null, s)
$fn$;

-- Moves open tickets to history with a non-match outcome and notifies their users ('cancelled').
-- Caller holds the pool locks of these tickets. p_check re-validates the reason under the lock:
-- 'expired' keeps only tickets expired at p_now, 'disconnected' only stale ones, anything else all.
create function matchmaker._retire(p_ids uuid[], p_outcome text, p_reason text, p_now timestamptz,
  p_heartbeat_timeout interval) returns integer
language plpgsql volatile
set search_path = ''
as $fn$
declare
  v_count integer;
begin
  with gone as (
    delete from matchmaker.tickets as t
    where t.id = any (p_ids)
      and (p_outcome <> 'expired' or t.expires_at <= p_now)
      and (p_outcome <> 'disconnected'
           or (p_heartbeat_timeout is not null and t.last_seen_at <= p_now - p_heartbeat_timeout))
    returning t.*
  ), hist as (
    insert into matchmaker.ticket_history
      (ticket_id, user_id, outcome, reason, pool, criteria, enqueued_at, ended_at)
    select g.id, g.user_id, p_outcome, p_reason, g.pool, g.criteria, g.enqueued_at, p_now from gone as g
    returning ticket_id, user_id
  )
  select pg_catalog.count(matchmaker._notify(h.user_id, 'cancelled', pg_catalog.jsonb_build_object(
    'type', 'cancelled', 'ticket_id', h.ticket_id, 'user_id', h.user_id, 'outcome', p_outcome,
    'reason', p_reason, 'at', p_now)))::integer
  into v_count
  from hist as h;
  return v_count;
end
$fn$;

-- Pairs tickets: p_a[i] (older) with p_b[i]. Creates the matches, records both tickets in history,
-- deletes them and notifies both users. Caller holds the pool locks. Returns the number of pairs.
create function matchmaker._apply_pairs(p_a uuid[], p_b uuid[], p_now timestamptz, p_widen jsonb)
returns integer
language plpgsql volatile
set search_path = ''
as $fn$
declare
  v_pairs integer := pg_catalog.cardinality(p_a);
  v_count integer;
begin
  if v_pairs = 0 then
    return 0;
  end if;
  with pairs as (
    select p.a, p.b, gen_random_uuid() as match_id
    from unnest(p_a, p_b) as p(a, b)
  ), gone as (
    delete from matchmaker.tickets as t
    where t.id = any (p_a || p_b)
    returning t.*
  ), made as (
    insert into matchmaker.matches (id, user_a, user_b, ticket_a, ticket_b, pool, criteria, created_at)
    select p.match_id, ta.user_id, tb.user_id, ta.id, tb.id, ta.pool,
      matchmaker._meet(matchmaker._effective(ta.criteria, ta.enqueued_at, p_now, p_widen),
                       matchmaker._effective(tb.criteria, tb.enqueued_at, p_now, p_widen)),
      p_now
    from pairs as p
    join gone as ta on ta.id = p.a
    join gone as tb on tb.id = p.b
    returning *
  ), hist as (
    insert into matchmaker.ticket_history
      (ticket_id, user_id, outcome, reason, match_id, partner_id, match_criteria, pool, criteria, enqueued_at, ended_at)
    select g.id, g.user_id, 'matched', null, m.id, m.user_b, m.criteria, g.pool, g.criteria, g.enqueued_at, p_now
    from made as m join gone as g on g.id = m.ticket_a
    union all
    select g.id, g.user_id, 'matched', null, m.id, m.user_a, m.criteria, g.pool, g.criteria, g.enqueued_at, p_now
    from made as m join gone as g on g.id = m.ticket_b
    returning ticket_id, user_id, match_id, partner_id, match_criteria
  )
  select pg_catalog.count(matchmaker._notify(h.user_id, 'matched', pg_catalog.jsonb_build_object(
    'type', 'matched', 'ticket_id', h.ticket_id, 'user_id', h.user_id,
    'match', pg_catalog.jsonb_build_object('id', h.match_id, 'partner_id', h.partner_id,
      'created_at', p_now, 'criteria', h.match_criteria))))::integer
  into v_count
  from hist as h;
  if v_count <> 2 * v_pairs then
    -- Cannot happen while every writer holds the pool lock; refuse rather than half-pair.
    raise exception 'matchmaker: internal error: % of % tickets paired', v_count, 2 * v_pairs
      using errcode = '40001';
  end if;
  return v_pairs;
end
$fn$;

-- The oldest waiting ticket of p_ticket's pool that can pair with it now (live, compatible,
-- eligible), or null. Expired and stale tickets passed on the way are retired (at most
-- s.claim_retire_limit). Caller holds the pool lock.
create function matchmaker._claim(p_ticket matchmaker.tickets, p_hint bigint, p_now timestamptz,
  s matchmaker.settings, out partner matchmaker.tickets, out retired integer)
language plpgsql volatile
set search_path = ''
as $fn$
declare
  r matchmaker.tickets;
  v_mine jsonb := matchmaker._effective(p_ticket.criteria, p_ticket.enqueued_at, p_now, s.widen);
  v_expired uuid[] := '{}';
  v_stale uuid[] := '{}';
  v_after bigint := p_hint - 1;
  v_batch integer;
begin
  retired := 0;
  -- Keyset batches with LIMIT: always an ordered scan of tickets(pool, seq), whatever the statistics.
  <<batches>>
  loop
  v_batch := 0;
  for r in
    select * from matchmaker.tickets as t
    where t.pool = p_ticket.pool and t.seq > v_after
    order by t.seq
    limit 32
  loop
    v_batch := v_batch + 1;
    v_after := r.seq;
    continue when r.id = p_ticket.id or r.user_id = p_ticket.user_id;
    if r.expires_at <= p_now then
      if pg_catalog.cardinality(v_expired) < s.claim_retire_limit then
        v_expired := v_expired || r.id;
      end if;
      continue;
    end if;
    if s.heartbeat_timeout is not null and r.last_seen_at <= p_now - s.heartbeat_timeout then
      if pg_catalog.cardinality(v_stale) < s.claim_retire_limit then
        v_stale := v_stale || r.id;
      end if;
      continue;
    end if;
    continue when not matchmaker._compatible(
      matchmaker._effective(r.criteria, r.enqueued_at, p_now, s.widen), v_mine);
    continue when not coalesce(matchmaker.is_eligible(r.user_id, p_ticket.user_id), false);
    partner := r;
    exit batches;
  end loop;
  exit batches when v_batch < 32;
  end loop batches;
  if pg_catalog.cardinality(v_expired) > 0 then
    retired := retired + matchmaker._retire(v_expired, 'expired', 'ttl', p_now, s.heartbeat_timeout);
  end if;
  if pg_catalog.cardinality(v_stale) > 0 then
    retired := retired + matchmaker._retire(v_stale, 'disconnected', 'heartbeat_timeout', p_now, s.heartbeat_timeout);
  end if;
end
$fn$;

-- Claims a partner for p_ticket (pool lock held) and pairs them. Returns the state of p_ticket's user.
-- p_settle: the caller deleted tickets of this pool too (so the head may have moved).
create function matchmaker._claim_and_pair(p_ticket matchmaker.tickets, p_hint bigint, p_now timestamptz,
  p_result text, s matchmaker.settings, p_settle boolean) returns jsonb
language plpgsql volatile
set search_path = ''
as $fn$
declare
  v_partner matchmaker.tickets;
  v_retired integer;
  v_claim record;
  h matchmaker.ticket_history;
begin
  select * into v_claim from matchmaker._claim(p_ticket, p_hint, p_now, s);
  v_partner := v_claim.partner;
  v_retired := v_claim.retired;
  if v_partner.id is null then
    if v_retired > 0 or p_settle then
      perform matchmaker._settle_pool(p_ticket.pool, p_hint);
    end if;
    return matchmaker._waiting_state(p_ticket, p_result, s);
  end if;
  if v_partner.seq < p_ticket.seq then
    perform matchmaker._apply_pairs(array[v_partner.id], array[p_ticket.id], p_now, s.widen);
  else
    perform matchmaker._apply_pairs(array[p_ticket.id], array[v_partner.id], p_now, s.widen);
  end if;
  perform matchmaker._settle_pool(p_ticket.pool, p_hint);
  select * into h from matchmaker.ticket_history where ticket_id = p_ticket.id;
  return matchmaker._history_state(h, p_result, s);
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Join
-- ---------------------------------------------------------------------------------------------
create function matchmaker._join(p_user uuid, p_criteria jsonb, p_ticket_id uuid) returns jsonb
language plpgsql volatile
set search_path = ''
set enable_seqscan = off
set enable_bitmapscan = off
as $fn$
declare
  s matchmaker.settings;
  v_pool text;
  v_criteria jsonb;
  v_old matchmaker.tickets;
  v_old_id uuid;
  v_t matchmaker.tickets;
  h matchmaker.ticket_history;
  v_now timestamptz;
  v_hint bigint;
  v_old_hint bigint;
begin
  perform matchmaker._require_user(p_user);
  s := matchmaker._settings();
  select n.pool, n.criteria into v_pool, v_criteria
  from matchmaker._normalize_criteria(p_criteria, s.criteria_keys) as n;

  perform matchmaker._lock_user(p_user);
  select * into v_old from matchmaker.tickets where user_id = p_user;
  v_old_id := v_old.id;
  if v_old_id is null then
    perform matchmaker._lock_pools(array[v_pool]);
  else
    perform matchmaker._lock_pools(array[v_pool, v_old.pool]);
    -- Re-read under the lock: a claimer or the sweeper may have finished it meanwhile.
    select * into v_old from matchmaker.tickets where id = v_old_id;
  end if;
  v_now := pg_catalog.clock_timestamp();

  -- Idempotency key, checked under the locks: nothing can finish this user's open ticket now (its pool
  -- is locked), so a ticket id is either open (v_old), finished (history) or unknown.
  if p_ticket_id is not null then
    select * into h from matchmaker.ticket_history where ticket_id = p_ticket_id;
    if found then
      if h.user_id <> p_user then
        raise exception 'matchmaker: ticket belongs to another user' using errcode = 'MM409';
      end if;
      return matchmaker._history_state(h, 'existing', s);
    end if;
    if v_old.id is distinct from p_ticket_id
       and exists (select 1 from matchmaker.tickets where id = p_ticket_id) then
      raise exception 'matchmaker: ticket belongs to another user' using errcode = 'MM409';
    end if;
  end if;

  if v_old_id is not null and v_old.id is null then
    select * into h from matchmaker.ticket_history where ticket_id = v_old_id;
    -- The open ticket we saw was matched while we waited: a double tap or a retry of that join.
    if h.outcome = 'matched' and (p_ticket_id is null or p_ticket_id = v_old_id) then
      return matchmaker._history_state(h, 'existing', s);
    end if;
  elsif v_old.id is not null then
    if v_old.expires_at <= v_now then
      v_old_hint := matchmaker._pool_hint(v_old.pool);
      perform matchmaker._retire(array[v_old.id], 'expired', 'ttl', v_now, s.heartbeat_timeout);
      perform matchmaker._settle_pool(v_old.pool, v_old_hint);
    elsif (v_old.criteria = v_criteria and v_old.pool = v_pool) or v_old.id = p_ticket_id then
      -- Same search already open: return it (double tap, retry, second tab). A stale one is revived.
      if s.heartbeat_timeout is not null and v_old.last_seen_at <= v_now - s.heartbeat_timeout then
        update matchmaker.tickets set last_seen_at = v_now where id = v_old.id returning * into v_old;
        return matchmaker._claim_and_pair(v_old, matchmaker._pool_hint(v_pool), v_now, 'existing', s, false);
      end if;
      return matchmaker._waiting_state(v_old, 'existing', s);
    else
      v_old_hint := matchmaker._pool_hint(v_old.pool);
      perform matchmaker._retire(array[v_old.id], 'superseded', 'criteria_changed', v_now, s.heartbeat_timeout);
      perform matchmaker._settle_pool(v_old.pool, v_old_hint);
    end if;
  end if;

  v_hint := matchmaker._pool_hint(v_pool);
  insert into matchmaker.tickets (id, user_id, pool, criteria, enqueued_at, expires_at, last_seen_at, widens_at)
  values (coalesce(p_ticket_id, gen_random_uuid()), p_user, v_pool, v_criteria, v_now, v_now + s.ticket_ttl, v_now,
          matchmaker._next_widen(v_criteria, v_now, v_now, s.widen))
  returning * into v_t;

  return matchmaker._claim_and_pair(v_t, v_hint, v_now, 'created', s, false);
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Cancel: atomic against pairing (both hold the pool lock). After 'cancelled' the user is not
-- matched; if pairing won, the match is returned with result 'already_matched'.
-- ---------------------------------------------------------------------------------------------
create function matchmaker._cancel(p_user uuid, p_ticket_id uuid) returns jsonb
language plpgsql volatile
set search_path = ''
set enable_seqscan = off
set enable_bitmapscan = off
as $fn$
declare
  s matchmaker.settings;
  t matchmaker.tickets;
  h matchmaker.ticket_history;
  v_now timestamptz;
  v_hint bigint;
  v_done integer;
begin
  perform matchmaker._require_user(p_user);
  s := matchmaker._settings();
  perform matchmaker._lock_user(p_user);
  if p_ticket_id is null then
    select * into t from matchmaker.tickets where user_id = p_user;
  else
    select * into t from matchmaker.tickets where id = p_ticket_id;
  end if;
  if t.id is not null and t.user_id <> p_user then
    raise exception 'matchmaker: ticket belongs to another user' using errcode = 'MM409';
  end if;
  if t.id is not null then
    perform matchmaker._lock_pools(array[t.pool]);
    v_now := pg_catalog.clock_timestamp();
    v_hint := matchmaker._pool_hint(t.pool);
    v_done := matchmaker._retire(array[t.id], 'cancelled', 'user', v_now, s.heartbeat_timeout);
    if v_done = 1 then
      perform matchmaker._settle_pool(t.pool, v_hint);
      select * into h from matchmaker.ticket_history where ticket_id = t.id;
      return matchmaker._history_state(h, 'cancelled', s);
    end if;
    p_ticket_id := t.id;   -- finished while we waited for the lock: report that outcome
  end if;
  if p_ticket_id is null then
    select * into h from matchmaker.ticket_history where user_id = p_user order by ended_at desc limit 1;
  else
    select * into h from matchmaker.ticket_history where ticket_id = p_ticket_id;
  end if;
  if h.ticket_id is null then
    return matchmaker._idle_state(p_user, 'not_waiting', s);
  end if;
  if h.user_id <> p_user then
    raise exception 'matchmaker: ticket belongs to another user' using errcode = 'MM409';
  end if;
  return matchmaker._history_state(h, case when h.outcome = 'matched' then 'already_matched' else 'not_waiting' end, s);
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Heartbeat: refreshes last_seen_at (a HOT update, no pool lock). When the ticket was stale (now
-- revived) or a flexible key has widened since, it also tries to claim a partner under the lock.
-- ---------------------------------------------------------------------------------------------
create function matchmaker._heartbeat(p_user uuid, p_ticket_id uuid) returns jsonb
language plpgsql volatile
set search_path = ''
set enable_seqscan = off
set enable_bitmapscan = off
as $fn$
declare
  s matchmaker.settings;
  t matchmaker.tickets;
  h matchmaker.ticket_history;
  v_now timestamptz;
  v_id uuid;
  v_hint bigint;
begin
  perform matchmaker._require_user(p_user);
  s := matchmaker._settings();
  if p_ticket_id is null then
    select * into t from matchmaker.tickets where user_id = p_user;
  else
    select * into t from matchmaker.tickets where id = p_ticket_id;
  end if;
  if t.id is not null and t.user_id <> p_user then
    raise exception 'matchmaker: ticket belongs to another user' using errcode = 'MM409';
  end if;
  v_id := coalesce(t.id, p_ticket_id);
  if t.id is not null then
    v_now := pg_catalog.clock_timestamp();
    if t.expires_at > v_now
       and not (s.heartbeat_timeout is not null and t.last_seen_at <= v_now - s.heartbeat_timeout)
       and not (t.widens_at is not null and t.widens_at <= v_now) then
      update matchmaker.tickets set last_seen_at = v_now where id = t.id returning * into t;
      if found then
        return matchmaker._waiting_state(t, 'alive', s);
      end if;
    else
      perform matchmaker._lock_user(p_user);
      perform matchmaker._lock_pools(array[t.pool]);
      v_now := pg_catalog.clock_timestamp();
      v_hint := matchmaker._pool_hint(t.pool);
      select * into t from matchmaker.tickets where id = t.id;
      if t.id is not null then
        if t.expires_at <= v_now then
          perform matchmaker._retire(array[t.id], 'expired', 'ttl', v_now, s.heartbeat_timeout);
          perform matchmaker._settle_pool(t.pool, v_hint);
        else
          update matchmaker.tickets
          set last_seen_at = v_now, widens_at = matchmaker._next_widen(criteria, enqueued_at, v_now, s.widen)
          where id = t.id returning * into t;
          return matchmaker._claim_and_pair(t, v_hint, v_now, 'alive', s, false);
        end if;
      end if;
    end if;
  end if;
  if v_id is null then
    select * into h from matchmaker.ticket_history where user_id = p_user order by ended_at desc limit 1;
  else
    select * into h from matchmaker.ticket_history where ticket_id = v_id;
  end if;
  if h.ticket_id is null then
    return matchmaker._idle_state(p_user, 'not_waiting', s);
  end if;
  if h.user_id <> p_user then
    raise exception 'matchmaker: ticket belongs to another user' using errcode = 'MM409';
  end if;
  return matchmaker._history_state(h, 'not_waiting', s);
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- State (read-only): the open ticket, else the given / most recent finished ticket, else idle.
-- An open ticket past its TTL reads as 'expired' (it can no longer match; the sweep records it).
-- ---------------------------------------------------------------------------------------------
create function matchmaker._state(p_user uuid, p_ticket_id uuid) returns jsonb
language plpgsql stable
set search_path = ''
set enable_seqscan = off
set enable_bitmapscan = off
as $fn$
declare
  s matchmaker.settings;
  t matchmaker.tickets;
  h matchmaker.ticket_history;
begin
  perform matchmaker._require_user(p_user);
  s := matchmaker._settings();
  if p_ticket_id is null then
    select * into t from matchmaker.tickets where user_id = p_user;
  else
    select * into t from matchmaker.tickets where id = p_ticket_id;
  end if;
  if t.id is not null then
    if t.user_id <> p_user then
      raise exception 'matchmaker: ticket belongs to another user' using errcode = 'MM409';
    end if;
    if t.expires_at <= pg_catalog.clock_timestamp() then
      return matchmaker._envelope(p_user, 'expired', 'state', matchmaker._ticket_json(t), null, 'ttl', s);
    end if;
    return matchmaker._waiting_state(t, 'state', s);
  end if;
  if p_ticket_id is null then
    select * into h from matchmaker.ticket_history where user_id = p_user order by ended_at desc limit 1;
  else
    select * into h from matchmaker.ticket_history where ticket_id = p_ticket_id;
  end if;
  if h.ticket_id is null then
    return matchmaker._idle_state(p_user, 'state', s);
  end if;
  if h.user_id <> p_user then
    raise exception 'matchmaker: ticket belongs to another user' using errcode = 'MM409';
  end if;
  return matchmaker._history_state(h, 'state', s);
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Batch pairing of one pool (pool lock held): replays the per-join rule over the pool in FIFO
-- order (each ticket claims the oldest compatible, eligible ticket still waiting), up to p_budget
-- pairs. Linear in the tickets read when they are compatible. Pathological pools (most pairs
-- incompatible or refused by the hook) cost one comparison per (ticket, waiting ticket): a step stops
-- a pool after greatest(10000, 20 * p_budget) comparisons; the rest waits for later steps, heartbeats
-- and joins.
-- ---------------------------------------------------------------------------------------------
create function matchmaker._pair_pool(p_pool text, p_budget integer, s matchmaker.settings) returns integer
language plpgsql volatile
set search_path = ''
as $fn$
declare
  r record;
  v_now timestamptz := pg_catalog.clock_timestamp();
  v_hint bigint := matchmaker._pool_hint(p_pool);
  w_id uuid[] := '{}';
  w_user uuid[] := '{}';
  w_crit jsonb[] := '{}';
  w_used boolean[] := '{}';
  w_n integer := 0;
  w_first integer := 1;
  v_a uuid[] := '{}';
  v_b uuid[] := '{}';
  v_pairs integer := 0;
  v_eff jsonb;
  v_read integer := 0;
  v_flex boolean := s.widen <> '{}'::jsonb
    or exists (select 1 from pg_catalog.jsonb_array_elements(s.criteria_keys) as e where e ->> 'match' = 'flexible');
  k integer;
  v_hit integer;
  v_comparisons integer := 0;
  v_max_comparisons integer := greatest(10000, 20 * p_budget);
  v_after bigint;
  v_batch integer;
  v_limit integer := least(256, 2 * p_budget + 16);
begin
  if p_budget <= 0 then
    return 0;
  end if;
  v_after := v_hint - 1;
  <<batches>>
  loop
  v_batch := 0;
  for r in
    select t.id, t.user_id, t.criteria, t.enqueued_at, t.seq, t.expires_at, t.last_seen_at
    from matchmaker.tickets as t
    where t.pool = p_pool and t.seq > v_after
    order by t.seq
    limit v_limit
  loop
    v_batch := v_batch + 1;
    v_after := r.seq;
    continue when r.expires_at <= v_now
      or (s.heartbeat_timeout is not null and r.last_seen_at <= v_now - s.heartbeat_timeout);
    v_read := v_read + 1;
    if v_read % 512 = 0 then
      v_now := pg_catalog.clock_timestamp();
    end if;
    v_eff := case when v_flex then matchmaker._effective(r.criteria, r.enqueued_at, v_now, s.widen) else r.criteria end;
    v_hit := null;
    while w_first <= w_n and w_used[w_first] loop
      w_first := w_first + 1;
    end loop;
    for k in w_first .. w_n loop
      continue when w_used[k];
      v_comparisons := v_comparisons + 1;
      continue when v_flex and not matchmaker._compatible(w_crit[k], v_eff);
      continue when not coalesce(matchmaker.is_eligible(w_user[k], r.user_id), false);
      v_hit := k;
      exit;
    end loop;
    if v_hit is null then
      w_n := w_n + 1;
      w_id[w_n] := r.id;
      w_user[w_n] := r.user_id;
      w_crit[w_n] := v_eff;
      w_used[w_n] := false;
    else
      w_used[v_hit] := true;
      v_a := v_a || w_id[v_hit];
      v_b := v_b || r.id;
      v_pairs := v_pairs + 1;
      exit batches when v_pairs >= p_budget;
    end if;
    exit batches when v_comparisons >= v_max_comparisons;
  end loop;
  exit batches when v_batch < v_limit;
  end loop batches;
  if v_pairs > 0 then
    perform matchmaker._apply_pairs(v_a, v_b, pg_catalog.clock_timestamp(), s.widen);
    perform matchmaker._settle_pool(p_pool, v_hint);
  end if;
  return v_pairs;
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- One bounded maintenance step. Every part is bounded by the settings' batch sizes, so a step costs
-- the same whatever the backlog (no scan of all open tickets while there is pairing work):
--   1. expired tickets (index on expires_at) -> history 'expired' + notification;
--   2. pools after p_cursor (from the insert-only registry), paired FIFO up to p_max_pairs pairs;
--   3. only when the pair budget was not exhausted, and at most every heartbeat_timeout / 3: tickets
--      with a stale heartbeat -> 'disconnected' (a scan of the open tickets: last_seen_at is not
--      indexed so heartbeats stay HOT; claims skip stale tickets meanwhile, so waiting costs nothing);
--   4. history older than history_retention and superseded pool_heads rows are pruned.
-- Locks: the pools of 1 and 2 are locked up front in the global order; phase 3 only TRIES locks
-- (never waits), so a step can never take part in a deadlock. At most max_pools_per_step pools.
-- p_cursor: pools are visited in text order after this one ("resume_after" is returned when more
-- pools remain).
-- ---------------------------------------------------------------------------------------------
create function matchmaker._maintenance_step(p_max_pairs integer, p_cursor text) returns jsonb
language plpgsql volatile
set search_path = ''
set enable_seqscan = off
set enable_bitmapscan = off
as $fn$
declare
  s matchmaker.settings := matchmaker._settings();
  v_now timestamptz := pg_catalog.clock_timestamp();
  v_budget integer := coalesce(p_max_pairs, s.batch_pairs);
  v_expired_ids uuid[];
  v_expired_pools text[];
  v_stale_ids uuid[];
  v_stale_pools text[];
  v_sweep_pools text[];
  v_pair_pools text[] := '{}';
  v_locked integer[];
  v_pool text;
  v_hint bigint;
  v_expired integer := 0;
  v_disconnected integer := 0;
  v_pairs integer := 0;
  v_pruned integer := 0;
  v_n integer;
  v_more boolean := false;
  v_next_cursor text;
  v_room integer;
  v_prev text;
begin
  if v_budget is null or v_budget < 0 or v_budget > 100000 then
    raise exception 'matchmaker: invalid argument: max_pairs must be between 0 and 100000' using errcode = '22023';
  end if;

  -- Candidates, without locks (re-checked under the locks).
  select coalesce(pg_catalog.array_agg(x.id), '{}'), coalesce(pg_catalog.array_agg(x.pool), '{}')
  into v_expired_ids, v_expired_pools
  from (select t.id, t.pool from matchmaker.tickets as t where t.expires_at <= v_now
        order by t.expires_at limit s.sweep_batch) as x;
  if pg_catalog.cardinality(v_expired_ids) >= s.sweep_batch then
    v_more := true;
  end if;
  select coalesce(pg_catalog.array_agg(p order by p), '{}') into v_sweep_pools
  from (select distinct p from pg_catalog.unnest(v_expired_pools) as p order by p limit s.max_pools_per_step) as x;
  if pg_catalog.cardinality(v_sweep_pools) >= s.max_pools_per_step then
    v_more := true;
  end if;
  v_room := s.max_pools_per_step - pg_catalog.cardinality(v_sweep_pools);
  if v_budget > 0 and v_room > 0 then
    select coalesce(pg_catalog.array_agg(x.pool order by x.pool), '{}') into v_pair_pools
    from (select p.pool from matchmaker.pools as p where p.pool > coalesce(p_cursor, '')
          order by p.pool limit v_room + 1) as x;
    if pg_catalog.cardinality(v_pair_pools) > v_room then
      v_more := true;
      v_pair_pools := v_pair_pools[1:v_room];
      v_next_cursor := v_pair_pools[v_room];
    end if;
  end if;

  perform matchmaker._lock_pools(v_sweep_pools || v_pair_pools);
  v_locked := array(select distinct pg_catalog.hashtext(p) from pg_catalog.unnest(v_sweep_pools || v_pair_pools) as p);
  v_now := pg_catalog.clock_timestamp();

  -- 1. Expired.
  foreach v_pool in array v_sweep_pools loop
    v_hint := matchmaker._pool_hint(v_pool);
    v_expired := v_expired + matchmaker._retire(
      array(select u.id from unnest(v_expired_ids, v_expired_pools) as u(id, pool) where u.pool = v_pool),
      'expired', 'ttl', v_now, s.heartbeat_timeout);
    perform matchmaker._settle_pool(v_pool, v_hint);
  end loop;

  -- 2. Pairing.
  v_prev := p_cursor;
  foreach v_pool in array v_pair_pools loop
    v_n := matchmaker._pair_pool(v_pool, v_budget - v_pairs, s);
    v_pairs := v_pairs + v_n;
    if v_pairs >= v_budget then
      -- Budget spent: the next step resumes in this pool (it may hold more pairs).
      v_more := true;
      v_next_cursor := v_prev;
      exit;
    end if;
    v_prev := v_pool;
  end loop;

  -- 3. Stale heartbeats: only when there is no pairing backlog, at most every heartbeat_timeout / 3
  --    (claims skip stale tickets meanwhile), and by one step at a time (SKIP LOCKED: never waits).
  v_now := pg_catalog.clock_timestamp();
  if s.heartbeat_timeout is not null and (v_budget = 0 or v_pairs < v_budget)
     and exists (select 1 from matchmaker.maintenance_state as m
                 where m.singleton and m.stale_swept_at <= v_now - s.heartbeat_timeout / 3
                 for update skip locked) then
    -- No index on last_seen_at (heartbeats stay HOT): a sequential scan of the open tickets.
    perform pg_catalog.set_config('enable_seqscan', 'on', true);
    select coalesce(pg_catalog.array_agg(x.id), '{}'), coalesce(pg_catalog.array_agg(x.pool), '{}')
    into v_stale_ids, v_stale_pools
    from (select t.id, t.pool from matchmaker.tickets as t
          where t.last_seen_at <= v_now - s.heartbeat_timeout and t.expires_at > v_now
          limit s.sweep_batch) as x;
    perform pg_catalog.set_config('enable_seqscan', 'off', true);
    if pg_catalog.cardinality(v_stale_ids) >= s.sweep_batch then
      v_more := true;
    else
      update matchmaker.maintenance_state set stale_swept_at = v_now where singleton;
    end if;
    for v_pool in
      select distinct p from pg_catalog.unnest(v_stale_pools) as p order by p limit s.max_pools_per_step
    loop
      continue when not (pg_catalog.hashtext(v_pool) = any (v_locked)
                         or pg_catalog.pg_try_advisory_xact_lock(1835887475, pg_catalog.hashtext(v_pool)));
      v_hint := matchmaker._pool_hint(v_pool);
      v_n := matchmaker._retire(
        array(select u.id from unnest(v_stale_ids, v_stale_pools) as u(id, pool) where u.pool = v_pool),
        'disconnected', 'heartbeat_timeout', pg_catalog.clock_timestamp(), s.heartbeat_timeout);
      v_disconnected := v_disconnected + v_n;
      if v_n > 0 then
        perform matchmaker._settle_pool(v_pool, v_hint);
      end if;
    end loop;
  end if;

  -- 4. Housekeeping.
  if s.history_retention is not null then
    with old as (
      select hh.ticket_id from matchmaker.ticket_history as hh
      where hh.ended_at < v_now - s.history_retention limit s.sweep_batch
    )
    delete from matchmaker.ticket_history as hh using old where hh.ticket_id = old.ticket_id;
    get diagnostics v_pruned = row_count;
  end if;
  with old as (
    select ph.id from matchmaker.pool_heads as ph
    where exists (select 1 from matchmaker.pool_heads as newer where newer.pool = ph.pool and newer.id > ph.id)
    order by ph.id limit s.sweep_batch
  )
  delete from matchmaker.pool_heads as ph using old where ph.id = old.id;
  get diagnostics v_n = row_count;
  v_pruned := v_pruned + v_n;
  if v_pruned >= s.sweep_batch then
    v_more := true;
  end if;

  return pg_catalog.jsonb_build_object(
    'pairs', v_pairs, 'expired', v_expired, 'disconnected', v_disconnected, 'pruned', v_pruned,
    'pools', pg_catalog.cardinality(v_pair_pools), 'more', v_more, 'resume_after', v_next_cursor);
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Maintenance procedure for pg_cron: drains in bounded steps, COMMITting after each, so no lock or
-- snapshot is held for long. With run_for, repeats every `every` until run_for has elapsed (used
-- with pg_cron 1.4, whose schedules are per minute). No SET clause / SECURITY DEFINER on purpose:
-- procedures with either cannot COMMIT. Runs as its caller (the owner or the cron job's owner).
-- ---------------------------------------------------------------------------------------------
create procedure matchmaker.run_maintenance(run_for interval default null, every interval default interval '5 seconds')
language plpgsql
as $fn$
declare
  v_deadline timestamptz := pg_catalog.clock_timestamp() + coalesce(run_for, interval '0');
  v_step jsonb;
  v_cursor text;
  v_steps integer;
begin
  loop
    v_cursor := null;
    v_steps := 0;
    loop
      v_step := matchmaker._maintenance_step(null, v_cursor);
      commit;
      v_steps := v_steps + 1;
      exit when not (v_step ->> 'more')::boolean or v_steps >= 100000
        or ((v_step ->> 'pairs')::integer + (v_step ->> 'expired')::integer + (v_step ->> 'disconnected')::integer
            + (v_step ->> 'pruned')::integer = 0 and v_step ->> 'resume_after' is null);
      v_cursor := v_step ->> 'resume_after';
    end loop;
    exit when run_for is null or pg_catalog.clock_timestamp() + every >= v_deadline;
    perform pg_catalog.pg_sleep(extract(epoch from every)::double precision);
    commit;
  end loop;
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- pg_cron scheduling (optional). pg_cron >= 1.5 takes '<n> seconds' schedules; 1.4 only cron
-- syntax (per minute), so there the job runs every minute and loops for 50 s in `every` steps.
-- ---------------------------------------------------------------------------------------------
create function matchmaker.schedule_maintenance(every interval default interval '5 seconds') returns text
language plpgsql volatile
set search_path = ''
as $fn$
declare
  v_version text;
  v_major integer;
  v_minor integer;
  v_seconds integer;
  v_schedule text;
  v_command text;
begin
  select e.extversion into v_version from pg_catalog.pg_extension as e where e.extname = 'pg_cron';
  if v_version is null then
    raise exception 'matchmaker: pg_cron is not installed in this database'
      using errcode = '55000',
            hint = 'Enable it (create extension pg_cron) and call select matchmaker.schedule_maintenance(); or call matchmaker_process() from a scheduler of your own.';
  end if;
  v_major := (pg_catalog.regexp_match(v_version, '^(\d+)'))[1]::integer;
  v_minor := coalesce((pg_catalog.regexp_match(v_version, '^\d+\.(\d+)'))[1]::integer, 0);
  v_seconds := greatest(1, least(59, ceil(extract(epoch from every))::integer));
  if v_major > 1 or (v_major = 1 and v_minor >= 5) then
    v_schedule := v_seconds::text || ' seconds';
    v_command := 'call matchmaker.run_maintenance()';
  else
    v_schedule := '* * * * *';
    v_command := pg_catalog.format('call matchmaker.run_maintenance(%L::interval, %L::interval)',
      '50 seconds', v_seconds::text || ' seconds');
  end if;
  perform matchmaker.unschedule_maintenance();
  perform cron.schedule('matchmaker-maintenance', v_schedule, v_command);
  return pg_catalog.format('pg_cron %s: job matchmaker-maintenance, schedule %L, command %s', v_version, v_schedule, v_command);
end
$fn$;

create function matchmaker.unschedule_maintenance() returns boolean
language plpgsql volatile
set search_path = ''
as $fn$
declare
  v_job bigint;
begin
  if not exists (select 1 from pg_catalog.pg_extension where extname = 'pg_cron') then
    return false;
  end if;
  execute 'select jobid from cron.job where jobname = $1' into v_job using 'matchmaker-maintenance';
  if v_job is null then
    return false;
  end if;
  execute 'select cron.unschedule($1)' using v_job;
  return true;
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- GDPR / moderation: forget everything about a user (no notifications).
-- ---------------------------------------------------------------------------------------------
create function matchmaker.forget_user(user_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
set enable_seqscan = off
set enable_bitmapscan = off
as $fn$
declare
  t matchmaker.tickets;
  v_tickets integer := 0;
  v_history integer;
  v_matches integer;
begin
  perform matchmaker._lock_user(forget_user.user_id);
  select * into t from matchmaker.tickets as x where x.user_id = forget_user.user_id;
  if t.id is not null then
    perform matchmaker._lock_pools(array[t.pool]);
    delete from matchmaker.tickets as x where x.id = t.id;
    get diagnostics v_tickets = row_count;
  end if;
  delete from matchmaker.ticket_history as x where x.user_id = forget_user.user_id;
  get diagnostics v_history = row_count;
  delete from matchmaker.matches as x where x.user_a = forget_user.user_id or x.user_b = forget_user.user_id;
  get diagnostics v_matches = row_count;
  return pg_catalog.jsonb_build_object('tickets', v_tickets, 'history', v_history, 'matches', v_matches);
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Public RPC wrappers (PostgREST exposes schema public). SECURITY DEFINER, empty search_path.
-- ---------------------------------------------------------------------------------------------
create function public.matchmaker_join(criteria jsonb default '{}'::jsonb, ticket_id uuid default null)
returns jsonb
language sql volatile security definer
set search_path = ''
as $fn$
  select matchmaker._join(auth.uid(), criteria, ticket_id)
$fn$;
comment on function public.matchmaker_join(jsonb, uuid) is
  'Join the matchmaking queue as auth.uid(). Returns {status, result, ticket, match, ...}; matched at once when a compatible user waits. ticket_id is an idempotency key.';

create function public.matchmaker_cancel(ticket_id uuid default null) returns jsonb
language sql volatile security definer
set search_path = ''
as $fn$
  select matchmaker._cancel(auth.uid(), ticket_id)
$fn$;
comment on function public.matchmaker_cancel(uuid) is
  'Leave the queue. result cancelled (never matched afterwards) | already_matched (with the match) | not_waiting.';

create function public.matchmaker_heartbeat(ticket_id uuid default null) returns jsonb
language sql volatile security definer
set search_path = ''
as $fn$
  select matchmaker._heartbeat(auth.uid(), ticket_id)
$fn$;
comment on function public.matchmaker_heartbeat(uuid) is
  'Keep the open ticket alive (call every heartbeat_interval_ms, and at widens_at). Returns the current state.';

create function public.matchmaker_state(ticket_id uuid default null) returns jsonb
language sql stable security definer
set search_path = ''
as $fn$
  select matchmaker._state(auth.uid(), ticket_id)
$fn$;
comment on function public.matchmaker_state(uuid) is
  'Current state of auth.uid()''s search (or of the given ticket): waiting, matched (with match), cancelled, expired, ... or idle.';

create function public.matchmaker_process(max_pairs integer default 1000, resume_after text default null) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $fn$
declare
  v_role text := nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'role';
begin
  if v_role is not null and v_role <> 'service_role' then
    raise exception 'matchmaker: service role required' using errcode = '42501';
  end if;
  return matchmaker._maintenance_step(max_pairs, resume_after);
end
$fn$;
comment on function public.matchmaker_process(integer, text) is
  'Service role / cron: one bounded step of sweeping expired and disconnected tickets and pairing waiting ones. Call again while "more" is true, passing its "resume_after".';

-- ---------------------------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC or anon; users get the four user RPCs; service_role the processor.
-- ---------------------------------------------------------------------------------------------
revoke all on all functions in schema matchmaker from public, anon, authenticated, service_role;
revoke all on procedure matchmaker.run_maintenance(interval, interval) from public, anon, authenticated, service_role;
revoke all on sequence matchmaker.ticket_seq from public, anon, authenticated, service_role;

revoke all on function public.matchmaker_join(jsonb, uuid) from public, anon, authenticated, service_role;
revoke all on function public.matchmaker_cancel(uuid) from public, anon, authenticated, service_role;
revoke all on function public.matchmaker_heartbeat(uuid) from public, anon, authenticated, service_role;
revoke all on function public.matchmaker_state(uuid) from public, anon, authenticated, service_role;
revoke all on function public.matchmaker_process(integer, text) from public, anon, authenticated, service_role;

grant execute on function public.matchmaker_join(jsonb, uuid) to authenticated;
grant execute on function public.matchmaker_cancel(uuid) to authenticated;
grant execute on function public.matchmaker_heartbeat(uuid) to authenticated;
grant execute on function public.matchmaker_state(uuid) to authenticated;
grant execute on function public.matchmaker_process(integer, text) to service_role;
grant execute on function matchmaker.forget_user(uuid) to service_role;

-- ---------------------------------------------------------------------------------------------
-- Realtime: private per-user topic readable only by its user; history as a postgres_changes source.
-- ---------------------------------------------------------------------------------------------
drop policy if exists matchmaker_user_topic_read on realtime.messages;
create policy matchmaker_user_topic_read on realtime.messages for select to authenticated
  using (
    realtime.messages.extension = 'broadcast'
    and (select realtime.topic()) = 'matchmaker:user:' || (select auth.uid())::text
  );

do $pub$
begin
  if exists (select 1 from pg_catalog.pg_publication where pubname = 'supabase_realtime' and not puballtables) then
    alter publication supabase_realtime add table matchmaker.ticket_history;
  elsif not exists (select 1 from pg_catalog.pg_publication where pubname = 'supabase_realtime') then
    raise notice 'matchmaker: publication supabase_realtime not found; postgres_changes on matchmaker.ticket_history is unavailable';
  end if;
end
$pub$;

-- ---------------------------------------------------------------------------------------------
-- pg_cron: schedule the sweeper when the extension is installed; otherwise call
-- select matchmaker.schedule_maintenance(); after enabling it (or run matchmaker_process yourself).
-- ---------------------------------------------------------------------------------------------
do $cron$
begin
  if exists (select 1 from pg_catalog.pg_extension where extname = 'pg_cron') then
    raise notice '%', matchmaker.schedule_maintenance();
  end if;
end
$cron$;
