-- =============================================================================================
-- supabase-matchmaker: presence tiers (schema version 20261128000200)
-- =============================================================================================
--
-- PURPOSE
--   The database half of the two presence tiers (PresenceStrategy: one Realtime Presence channel;
--   ShardedPresenceStrategy: S shard channels). Clients find each other through Presence and pair
--   themselves with a deterministic rule; the database is the referee: it records who is searching
--   (an expiring row per search, so abandoned tabs stop being claimable), makes each match exactly
--   once (race-safe claim), records it in matchmaker.matches (shared with the queue tier) and tells
--   both users on their private topic. Requires 20261128000100_matchmaker_queue (schema
--   `matchmaker`, matchmaker.matches, matchmaker.is_eligible, the realtime.messages read policy).
--
-- ENTRY POINTS (PostgREST: POST /rest/v1/rpc/<name>; all act for auth.uid(), role authenticated)
--   matchmaker_presence_begin(criteria jsonb default '{}', search_id uuid default null,
--                             shard integer default null)                         -> jsonb
--       Open a search (or return the caller's open one: same criteria -> "existing", refreshed;
--       other criteria -> the old one is superseded). search_id is an idempotency key: a retried
--       begin returns that search, open or finished. shard: where the client starts (sharded tier).
--   matchmaker_presence_end(search_id uuid default null)                         -> jsonb
--       Withdraw the search. Atomic against claims (same row lock): after "cancelled" no match is
--       made for it; when a claim won the race, the match is returned ("already_matched").
--   matchmaker_presence_heartbeat(search_id uuid default null)                   -> jsonb
--       Extend expires_at by settings.search_ttl (call every heartbeat_interval_ms).
--   matchmaker_presence_state(search_id uuid default null)                       -> jsonb  (STABLE)
--       The open search, else the given / most recent finished one, else idle.
--   matchmaker_presence_claim(user_a uuid, user_b uuid)                          -> jsonb
--       Pair two searching users. The caller must be one of them. Losing is a result, not an error.
--   matchmaker_presence_move(shard_count integer, current_shard integer,
--                            target_shard integer default null, search_id uuid default null) -> jsonb
--       Sharded tier: record the shard the client moves to. Without target_shard the database picks
--       one: among the shards holding an odd number of searchers of the caller's pool (counting the
--       caller in current_shard), the one whose oldest searcher is oldest. The caller stays when that
--       is its own shard. Serialised per pool, so lone searchers converge instead of swapping.
--   matchmaker.presence_cleanup()            -> jsonb   service_role / pg_cron: expire, prune history
--   matchmaker.presence_forget_user(uuid)    -> jsonb   service_role: GDPR erase of presence rows
--
-- RESULT SHAPE (every user RPC returns one JSON object)
--   {
--     "status":  "idle" | "searching" | "matched" | "cancelled" | "expired" | "superseded",
--                -- the CALLER's search; an open row past expires_at reads "expired"
--     "result":  begin: "created" | "existing"; end: "cancelled" | "already_matched" | "not_searching";
--                heartbeat: "alive" | "not_searching"; state: "state"; claim: "claimed" | "lost";
--                move: "moved" | "stayed" | "not_searching",
--     "reason":  null | cancelled/expired/superseded: "user" | "ttl" | "criteria_changed" | "matched_elsewhere"
--                claim lost: "caller_not_searching" | "caller_matched" | "caller_in_match"
--                          | "partner_not_searching" | "partner_matched" | "partner_in_match"
--                          | "criteria_mismatch" | "not_eligible",
--     "search":  null | { "id", "criteria", "pool", "started_at", "started_us", "expires_at",
--                         "shard", "ended_at" },            -- started_us: epoch microseconds (number)
--     "match":   null | { "id", "partner_id", "created_at", "criteria" },
--     "user_id": "<uid>",
--     "topic":   "matchmaker:user:<uid>",                     -- private topic (same as the queue tier)
--     "ttl_ms": integer, "heartbeat_interval_ms": integer,
--     "shard":   integer | null,                             -- move only: where to be now
--     "server_time": timestamptz
--   }
--
-- NOTIFICATIONS (realtime.send, private topic 'matchmaker:user:<uid>', the queue tier's conventions,
-- so its read policy matchmaker_user_topic_read covers both tiers; "tier" tells them apart)
--   event 'matched':   { "type":"matched", "tier":"presence", "ticket_id":<search id>, "user_id",
--                        "match": {id, partner_id, created_at, criteria} }
--   event 'cancelled': { "type":"cancelled", "tier":"presence", "ticket_id", "user_id", "outcome",
--                        "reason", "at" }      outcome: cancelled | expired | superseded
--   Delivery is at most once and clients must treat a notification as a hint: they confirm it with
--   matchmaker_presence_state() (and reconcile after every (re)subscribe).
--
-- ERRORS (SQLSTATE, message prefix 'matchmaker:')
--   42501  'matchmaker: not authenticated'                  auth.uid() is null (anon / service key)
--   42501  'matchmaker: a claim must include the caller'    caller is neither user_a nor user_b
--   42501  permission denied for function ...              (Postgres) anon, or missing grant
--   22023  'matchmaker: invalid criteria: ...'              not an object, > 16 keys, bad key/value
--   22023  'matchmaker: invalid argument: ...'              null users, a user paired with itself, bad shard
--   MM409  'matchmaker: search belongs to another user'     search_id of someone else
--   55000  'matchmaker: ...'                                prerequisites missing
--   PostgREST maps 42501 -> 401 (anon) / 403, 22023 and MM409 -> 400.
--
-- DESIGN AND INVARIANTS
--   * One open search per user: partial UNIQUE (user_id) WHERE status = 'searching'. Finished rows
--     stay (status + match) so a client that missed a notification reconciles; each begin prunes the
--     caller's rows older than settings.history_retention, presence_cleanup() prunes everyone's.
--   * Expiry: a row is claimable only while expires_at > clock_timestamp(); clients extend it with
--     heartbeats. An abandoned tab stops being claimable after search_ttl even if its presence
--     lingers. Rows found expired under a lock are closed ('expired') and their user notified.
--   * Claims lock the two users' open rows with one SELECT ... ORDER BY user_id FOR UPDATE (a global
--     order, so concurrent claims never deadlock), then decide with clock_timestamp() taken after the
--     locks. end/heartbeat/move lock only the caller's own row; begin/end take the caller's user
--     advisory lock first (namespace 1835887477) and then at most that user's row; move takes the
--     pool's advisory lock (namespace 1835887478) and then the caller's row. No path holds a row lock
--     while waiting for an advisory lock, so no cycle exists.
--   * A match needs: both rows searching and unexpired, the same pool (canonical criteria JSON), no
--     match recorded for either user since their search started (so a user the queue tier matched
--     meanwhile is not matched twice), and matchmaker.is_eligible(older, younger). It is written
--     once to matchmaker.matches (user_a/ticket_a = the older search, ticket ids = search ids), both
--     rows become 'matched', both users are notified; all in the claim's transaction.
--   * Security: functions are SECURITY DEFINER with search_path = '' and fully qualified names;
--     EXECUTE is revoked from PUBLIC and granted explicitly; RLS is enabled on every table; nothing
--     is granted to anon. Clients cannot write the private topics (no INSERT policy on
--     realtime.messages), so notifications come from these functions only.
-- =============================================================================================

do $prereq$
declare
  v_missing text[] := '{}';
begin
  if pg_catalog.to_regclass('matchmaker.matches') is null then
    v_missing := v_missing || 'table matchmaker.matches'::text;
  end if;
  if pg_catalog.to_regprocedure('matchmaker.is_eligible(uuid, uuid)') is null then
    v_missing := v_missing || 'function matchmaker.is_eligible(uuid, uuid)'::text;
  end if;
  if pg_catalog.to_regclass('matchmaker.schema_migrations') is null then
    v_missing := v_missing || 'table matchmaker.schema_migrations'::text;
  end if;
  if pg_catalog.to_regprocedure('auth.uid()') is null then
    v_missing := v_missing || 'function auth.uid()'::text;
  end if;
  if pg_catalog.to_regprocedure('realtime.send(jsonb, text, text, boolean)') is null then
    v_missing := v_missing || 'function realtime.send(jsonb, text, text, boolean)'::text;
  end if;
  if pg_catalog.cardinality(v_missing) > 0 then
    raise exception 'matchmaker: the presence migration needs %', pg_catalog.array_to_string(v_missing, ', ')
      using errcode = '55000',
            hint = 'Apply 20261128000100_matchmaker_queue.sql first, on a database with Supabase''s shape.';
  end if;
  if not exists (select 1 from pg_catalog.pg_policies
                 where schemaname = 'realtime' and tablename = 'messages' and policyname = 'matchmaker_user_topic_read') then
    raise notice 'matchmaker: policy matchmaker_user_topic_read on realtime.messages is missing; presence clients cannot receive match notifications and will rely on reconciliation';
  end if;
end
$prereq$;

insert into matchmaker.schema_migrations (version, name)
values ('20261128000200', 'matchmaker_presence')
on conflict (version) do nothing;

-- ---------------------------------------------------------------------------------------------
-- Settings: one row. UPDATE matchmaker.presence_settings SET search_ttl = '2 minutes';
-- ---------------------------------------------------------------------------------------------
create table matchmaker.presence_settings (
  singleton boolean primary key default true check (singleton),
  search_ttl interval not null default interval '60 seconds' check (search_ttl >= interval '5 seconds'),
  history_retention interval not null default interval '1 day' check (history_retention > interval '0'),
  updated_at timestamptz not null default pg_catalog.clock_timestamp()
);
comment on table matchmaker.presence_settings is
  'Presence tiers settings (one row). search_ttl: a search not extended by a heartbeat for this long stops being claimable; history_retention: finished searches are pruned after this.';
insert into matchmaker.presence_settings default values;
alter table matchmaker.presence_settings enable row level security;
revoke all on matchmaker.presence_settings from public, anon, authenticated, service_role;
grant select, update on matchmaker.presence_settings to service_role;

-- ---------------------------------------------------------------------------------------------
-- Searches: one row per search (the open one, plus finished ones until pruned).
-- ---------------------------------------------------------------------------------------------
create table matchmaker.presence_searches (
  id uuid primary key,
  user_id uuid not null,
  status text not null default 'searching'
    check (status in ('searching', 'matched', 'cancelled', 'expired', 'superseded')),
  reason text,
  criteria jsonb not null,
  pool text not null,
  shard integer check (shard is null or shard >= 0),
  started_at timestamptz not null,
  expires_at timestamptz not null,
  ended_at timestamptz,
  match_id uuid,           -- no FK: a match may be deleted (moderation, GDPR) without touching this
  partner_id uuid,
  match_criteria jsonb,
  check ((status = 'searching') = (ended_at is null)),
  check ((status = 'matched') = (match_id is not null))
);
create unique index presence_searches_one_open_idx on matchmaker.presence_searches (user_id)
  where status = 'searching';
create index presence_searches_user_idx on matchmaker.presence_searches (user_id, started_at desc);
create index presence_searches_pool_idx on matchmaker.presence_searches (pool, started_at)
  where status = 'searching';
create index presence_searches_ended_idx on matchmaker.presence_searches (ended_at)
  where status <> 'searching';
comment on table matchmaker.presence_searches is
  'Presence tiers: who is searching (status searching, claimable until expires_at) and how finished searches ended. Write only through the matchmaker_presence_* functions.';

alter table matchmaker.presence_searches enable row level security;
revoke all on matchmaker.presence_searches from public, anon, authenticated, service_role;
grant select on matchmaker.presence_searches to authenticated, service_role;
grant delete on matchmaker.presence_searches to service_role;
create policy presence_searches_select_own on matchmaker.presence_searches for select to authenticated
  using (user_id = (select auth.uid()));

-- ---------------------------------------------------------------------------------------------
-- Internal helpers (EXECUTE revoked from PUBLIC below; called from the definer functions).
-- ---------------------------------------------------------------------------------------------
create function matchmaker._presence_settings() returns matchmaker.presence_settings
language plpgsql stable
set search_path = ''
as $fn$
declare
  s matchmaker.presence_settings;
begin
  select * into s from matchmaker.presence_settings where singleton;
  if not found then
    raise exception 'matchmaker: presence settings row missing' using errcode = '55000',
      hint = 'insert into matchmaker.presence_settings default values;';
  end if;
  return s;
end
$fn$;

-- Users' advisory lock for begin/end (two-key form; 1835887477 = presence users).
create function matchmaker._presence_lock_user(p_user uuid) returns void
language sql volatile
set search_path = ''
as $fn$
  select pg_catalog.pg_advisory_xact_lock(1835887477, pg_catalog.hashtext(p_user::text))
$fn$;

-- Validates criteria (the SDK's rules: an object of at most 16 keys ^[A-Za-z][A-Za-z0-9_]{0,62}$,
-- values string (<= 200 chars) / number / boolean). The pool is the canonical jsonb text.
create function matchmaker._presence_criteria(p_criteria jsonb, out criteria jsonb, out pool text)
language plpgsql immutable
set search_path = ''
as $fn$
declare
  v_key text;
  v_val jsonb;
  v_n integer := 0;
begin
  criteria := coalesce(p_criteria, '{}'::jsonb);
  if pg_catalog.jsonb_typeof(criteria) = 'null' then
    criteria := '{}'::jsonb;
  end if;
  if pg_catalog.jsonb_typeof(criteria) <> 'object' then
    raise exception 'matchmaker: invalid criteria: expected a JSON object, got %', pg_catalog.jsonb_typeof(criteria)
      using errcode = '22023';
  end if;
  for v_key, v_val in select e.key, e.value from pg_catalog.jsonb_each(criteria) as e loop
    v_n := v_n + 1;
    if v_key !~ '^[A-Za-z][A-Za-z0-9_]{0,62}$' then
      raise exception 'matchmaker: invalid criteria: key "%" must match ^[A-Za-z][A-Za-z0-9_]{0,62}$', v_key
        using errcode = '22023';
    end if;
    if pg_catalog.jsonb_typeof(v_val) not in ('string', 'number', 'boolean') then
      raise exception 'matchmaker: invalid criteria: value of "%" must be a string, number or boolean', v_key
        using errcode = '22023';
    end if;
    if pg_catalog.jsonb_typeof(v_val) = 'string' and pg_catalog.length(v_val #>> '{}') > 200 then
      raise exception 'matchmaker: invalid criteria: value of "%" is longer than 200 characters', v_key
        using errcode = '22023';
    end if;
  end loop;
  if v_n > 16 then
    raise exception 'matchmaker: invalid criteria: at most 16 keys, got %', v_n using errcode = '22023';
  end if;
  pool := criteria::text;
end
$fn$;

create function matchmaker._presence_topic(p_user uuid) returns text
language sql immutable parallel safe
set search_path = ''
as $fn$
  select 'matchmaker:user:' || p_user::text
$fn$;

create function matchmaker._presence_notify(p_user uuid, p_event text, p_payload jsonb) returns void
language plpgsql volatile
set search_path = ''
as $fn$
begin
  perform realtime.send(p_payload, p_event, matchmaker._presence_topic(p_user), true);
end
$fn$;

-- The status a row reads as now: an open row past its expiry reads 'expired'.
create function matchmaker._presence_status(r matchmaker.presence_searches) returns text
language sql volatile
set search_path = ''
as $fn$
  select case
    when r.id is null then 'idle'
    when r.status = 'searching' and r.expires_at <= pg_catalog.clock_timestamp() then 'expired'
    else r.status end
$fn$;

create function matchmaker._presence_envelope(p_user uuid, r matchmaker.presence_searches, p_result text,
  p_reason text, s matchmaker.presence_settings) returns jsonb
language plpgsql volatile
set search_path = ''
as $fn$
declare
  v_status text := matchmaker._presence_status(r);
begin
  return pg_catalog.jsonb_build_object(
    'status', v_status,
    'result', p_result,
    'reason', coalesce(p_reason, case when v_status = 'expired' and r.status = 'searching' then 'ttl' else r.reason end),
    'search', case when r.id is null then null else pg_catalog.jsonb_build_object(
      'id', r.id, 'criteria', r.criteria, 'pool', r.pool, 'started_at', r.started_at,
      'started_us', (extract(epoch from r.started_at) * 1000000)::bigint,
      'expires_at', r.expires_at, 'shard', r.shard, 'ended_at', r.ended_at) end,
    'match', case when r.status = 'matched' then pg_catalog.jsonb_build_object(
      'id', r.match_id, 'partner_id', r.partner_id, 'created_at', r.ended_at, 'criteria', r.match_criteria) end,
    'user_id', p_user,
    'topic', matchmaker._presence_topic(p_user),
    'ttl_ms', (extract(epoch from s.search_ttl) * 1000)::integer,
    'heartbeat_interval_ms', greatest(1000, (extract(epoch from s.search_ttl) * 1000 / 4)::integer),
    'server_time', pg_catalog.clock_timestamp());
end
$fn$;

-- Closes an open row without a match and notifies its user ('cancelled'). Caller holds the row lock.
create function matchmaker._presence_close(r matchmaker.presence_searches, p_status text, p_reason text,
  p_now timestamptz) returns matchmaker.presence_searches
language plpgsql volatile
set search_path = ''
as $fn$
declare
  v_row matchmaker.presence_searches;
begin
  update matchmaker.presence_searches as x
  set status = p_status, reason = p_reason, ended_at = p_now
  where x.id = r.id and x.status = 'searching'
  returning * into v_row;
  if v_row.id is null then
    select * into v_row from matchmaker.presence_searches as x where x.id = r.id;
    return v_row;
  end if;
  perform matchmaker._presence_notify(v_row.user_id, 'cancelled', pg_catalog.jsonb_build_object(
    'type', 'cancelled', 'tier', 'presence', 'ticket_id', v_row.id, 'user_id', v_row.user_id,
    'outcome', p_status, 'reason', p_reason, 'at', p_now));
  return v_row;
end
$fn$;

-- The row a user RPC is about: the given search (owner checked), else the user's open one, else the
-- user's most recent one (a null row when there is none). Locks it when p_lock.
create function matchmaker._presence_row(p_user uuid, p_search_id uuid, p_lock boolean)
returns matchmaker.presence_searches
language plpgsql volatile
set search_path = ''
as $fn$
declare
  r matchmaker.presence_searches;
begin
  if p_search_id is not null then
    if p_lock then
      select * into r from matchmaker.presence_searches as x where x.id = p_search_id for update;
    else
      select * into r from matchmaker.presence_searches as x where x.id = p_search_id;
    end if;
    if r.id is not null and r.user_id <> p_user then
      raise exception 'matchmaker: search belongs to another user' using errcode = 'MM409';
    end if;
    return r;
  end if;
  if p_lock then
    select * into r from matchmaker.presence_searches as x
    where x.user_id = p_user and x.status = 'searching' for update;
  else
    select * into r from matchmaker.presence_searches as x where x.user_id = p_user and x.status = 'searching';
  end if;
  if r.id is null then
    select * into r from matchmaker.presence_searches as x
    where x.user_id = p_user order by x.started_at desc limit 1;
  end if;
  return r;
end
$fn$;

-- True when a match involving p_user was recorded at or after p_since (by any tier).
create function matchmaker._presence_matched_since(p_user uuid, p_since timestamptz) returns boolean
language sql stable
set search_path = ''
as $fn$
  select exists (select 1 from matchmaker.matches as m where m.user_a = p_user and m.created_at >= p_since)
      or exists (select 1 from matchmaker.matches as m where m.user_b = p_user and m.created_at >= p_since)
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Begin
-- ---------------------------------------------------------------------------------------------
create function matchmaker._presence_begin(p_user uuid, p_criteria jsonb, p_search_id uuid, p_shard integer)
returns jsonb
language plpgsql volatile
set search_path = ''
as $fn$
declare
  s matchmaker.presence_settings;
  v_criteria jsonb;
  v_pool text;
  r matchmaker.presence_searches;
  v_now timestamptz;
begin
  perform matchmaker._require_user(p_user);
  s := matchmaker._presence_settings();
  select c.criteria, c.pool into v_criteria, v_pool from matchmaker._presence_criteria(p_criteria) as c;
  if p_shard is not null and (p_shard < 0 or p_shard >= 100000) then
    raise exception 'matchmaker: invalid argument: shard must be between 0 and 99999' using errcode = '22023';
  end if;
  perform matchmaker._presence_lock_user(p_user);
  v_now := pg_catalog.clock_timestamp();

  delete from matchmaker.presence_searches as x
  where x.user_id = p_user and x.status <> 'searching' and x.ended_at < v_now - s.history_retention;

  -- Idempotency key: a search id we already know answers for itself.
  if p_search_id is not null then
    r := matchmaker._presence_row(p_user, p_search_id, true);
    if r.id is not null then
      if r.status = 'searching' and r.expires_at > v_now then
        update matchmaker.presence_searches as x set expires_at = v_now + s.search_ttl
        where x.id = r.id returning * into r;
      elsif r.status = 'searching' then
        r := matchmaker._presence_close(r, 'expired', 'ttl', v_now);
      end if;
      return matchmaker._presence_envelope(p_user, r, 'existing', null, s);
    end if;
  end if;

  select * into r from matchmaker.presence_searches as x
  where x.user_id = p_user and x.status = 'searching' for update;
  if r.id is not null then
    if r.expires_at <= v_now then
      perform matchmaker._presence_close(r, 'expired', 'ttl', v_now);
    elsif r.pool = v_pool then
      -- Same search already open (second tab, retry without key): return it, refreshed.
      update matchmaker.presence_searches as x set expires_at = v_now + s.search_ttl
      where x.id = r.id returning * into r;
      return matchmaker._presence_envelope(p_user, r, 'existing', null, s);
    else
      perform matchmaker._presence_close(r, 'superseded', 'criteria_changed', v_now);
    end if;
  end if;

  insert into matchmaker.presence_searches (id, user_id, criteria, pool, shard, started_at, expires_at)
  values (coalesce(p_search_id, gen_random_uuid()), p_user, v_criteria, v_pool, p_shard, v_now, v_now + s.search_ttl)
  returning * into r;
  return matchmaker._presence_envelope(p_user, r, 'created', null, s);
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- End: atomic against claims (both lock the row). After 'cancelled' the search is never matched.
-- ---------------------------------------------------------------------------------------------
create function matchmaker._presence_end(p_user uuid, p_search_id uuid) returns jsonb
language plpgsql volatile
set search_path = ''
as $fn$
declare
  s matchmaker.presence_settings;
  r matchmaker.presence_searches;
  v_now timestamptz;
begin
  perform matchmaker._require_user(p_user);
  s := matchmaker._presence_settings();
  perform matchmaker._presence_lock_user(p_user);
  r := matchmaker._presence_row(p_user, p_search_id, true);
  v_now := pg_catalog.clock_timestamp();
  if r.id is null then
    return matchmaker._presence_envelope(p_user, r, 'not_searching', null, s);
  end if;
  if r.status = 'searching' then
    if r.expires_at <= v_now then
      r := matchmaker._presence_close(r, 'expired', 'ttl', v_now);
      return matchmaker._presence_envelope(p_user, r, 'not_searching', null, s);
    end if;
    r := matchmaker._presence_close(r, 'cancelled', 'user', v_now);
    return matchmaker._presence_envelope(p_user, r, 'cancelled', null, s);
  end if;
  return matchmaker._presence_envelope(p_user, r,
    case when r.status = 'matched' then 'already_matched' else 'not_searching' end, null, s);
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Heartbeat: extends an open, unexpired search (row lock only).
-- ---------------------------------------------------------------------------------------------
create function matchmaker._presence_heartbeat(p_user uuid, p_search_id uuid) returns jsonb
language plpgsql volatile
set search_path = ''
as $fn$
declare
  s matchmaker.presence_settings;
  r matchmaker.presence_searches;
  v_now timestamptz;
begin
  perform matchmaker._require_user(p_user);
  s := matchmaker._presence_settings();
  r := matchmaker._presence_row(p_user, p_search_id, true);
  v_now := pg_catalog.clock_timestamp();
  if r.id is not null and r.status = 'searching' then
    if r.expires_at > v_now then
      update matchmaker.presence_searches as x set expires_at = v_now + s.search_ttl
      where x.id = r.id returning * into r;
      return matchmaker._presence_envelope(p_user, r, 'alive', null, s);
    end if;
    r := matchmaker._presence_close(r, 'expired', 'ttl', v_now);
  end if;
  return matchmaker._presence_envelope(p_user, r, 'not_searching', null, s);
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- State (read-only).
-- ---------------------------------------------------------------------------------------------
create function matchmaker._presence_state(p_user uuid, p_search_id uuid) returns jsonb
language plpgsql stable
set search_path = ''
as $fn$
declare
  s matchmaker.presence_settings;
  r matchmaker.presence_searches;
begin
  perform matchmaker._require_user(p_user);
  s := matchmaker._presence_settings();
  r := matchmaker._presence_row(p_user, p_search_id, false);
  return matchmaker._presence_envelope(p_user, r, 'state', null, s);
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Claim: the race-safe referee. Losing returns {"result":"lost","reason":...}; only misuse raises.
-- ---------------------------------------------------------------------------------------------
create function matchmaker._presence_claim(p_caller uuid, p_a uuid, p_b uuid) returns jsonb
language plpgsql volatile
set search_path = ''
as $fn$
declare
  s matchmaker.presence_settings;
  v_partner uuid;
  r matchmaker.presence_searches;
  v_mine matchmaker.presence_searches;
  v_theirs matchmaker.presence_searches;
  v_old matchmaker.presence_searches;
  v_young matchmaker.presence_searches;
  v_now timestamptz;
  v_match uuid := gen_random_uuid();
begin
  perform matchmaker._require_user(p_caller);
  if p_a is null or p_b is null then
    raise exception 'matchmaker: invalid argument: user_a and user_b are required' using errcode = '22023';
  end if;
  if p_caller <> p_a and p_caller <> p_b then
    raise exception 'matchmaker: a claim must include the caller'
      using errcode = '42501', hint = 'Pass the signed-in user as user_a or user_b.';
  end if;
  if p_a = p_b then
    raise exception 'matchmaker: invalid argument: a user cannot be matched with themselves' using errcode = '22023';
  end if;
  s := matchmaker._presence_settings();
  v_partner := case when p_caller = p_a then p_b else p_a end;

  -- Both users' open rows, locked in one global order (by user id).
  for r in
    select * from matchmaker.presence_searches as x
    where x.user_id in (p_a, p_b) and x.status = 'searching'
    order by x.user_id
    for update
  loop
    if r.user_id = p_caller then
      v_mine := r;
    else
      v_theirs := r;
    end if;
  end loop;
  v_now := pg_catalog.clock_timestamp();

  if v_mine.id is null then
    select * into r from matchmaker.presence_searches as x
    where x.user_id = p_caller order by x.started_at desc limit 1;
    return matchmaker._presence_envelope(p_caller, r, 'lost',
      case when r.status = 'matched' then 'caller_matched' else 'caller_not_searching' end, s);
  end if;
  if v_mine.expires_at <= v_now then
    v_mine := matchmaker._presence_close(v_mine, 'expired', 'ttl', v_now);
    return matchmaker._presence_envelope(p_caller, v_mine, 'lost', 'caller_not_searching', s);
  end if;
  if matchmaker._presence_matched_since(p_caller, v_mine.started_at) then
    v_mine := matchmaker._presence_close(v_mine, 'superseded', 'matched_elsewhere', v_now);
    return matchmaker._presence_envelope(p_caller, v_mine, 'lost', 'caller_in_match', s);
  end if;
  if v_theirs.id is null then
    return matchmaker._presence_envelope(p_caller, v_mine, 'lost',
      case when exists (select 1 from matchmaker.presence_searches as x
                        where x.user_id = v_partner and x.status = 'matched'
                          and x.ended_at >= v_now - s.search_ttl)
           then 'partner_matched' else 'partner_not_searching' end, s);
  end if;
  if v_theirs.expires_at <= v_now then
    perform matchmaker._presence_close(v_theirs, 'expired', 'ttl', v_now);
    return matchmaker._presence_envelope(p_caller, v_mine, 'lost', 'partner_not_searching', s);
  end if;
  if matchmaker._presence_matched_since(v_partner, v_theirs.started_at) then
    perform matchmaker._presence_close(v_theirs, 'superseded', 'matched_elsewhere', v_now);
    return matchmaker._presence_envelope(p_caller, v_mine, 'lost', 'partner_in_match', s);
  end if;
  if v_mine.pool <> v_theirs.pool then
    return matchmaker._presence_envelope(p_caller, v_mine, 'lost', 'criteria_mismatch', s);
  end if;

  if (v_mine.started_at, v_mine.user_id::text) <= (v_theirs.started_at, v_theirs.user_id::text) then
    v_old := v_mine;
    v_young := v_theirs;
  else
    v_old := v_theirs;
    v_young := v_mine;
  end if;
  if not coalesce(matchmaker.is_eligible(v_old.user_id, v_young.user_id), false) then
    return matchmaker._presence_envelope(p_caller, v_mine, 'lost', 'not_eligible', s);
  end if;

  insert into matchmaker.matches (id, user_a, user_b, ticket_a, ticket_b, pool, criteria, created_at)
  values (v_match, v_old.user_id, v_young.user_id, v_old.id, v_young.id, v_old.pool, v_old.criteria, v_now);

  update matchmaker.presence_searches as x
  set status = 'matched', reason = null, ended_at = v_now, match_id = v_match, match_criteria = v_old.criteria,
      partner_id = case when x.id = v_old.id then v_young.user_id else v_old.user_id end
  where x.id in (v_old.id, v_young.id);

  for r in select * from matchmaker.presence_searches as x where x.id in (v_old.id, v_young.id) loop
    perform matchmaker._presence_notify(r.user_id, 'matched', pg_catalog.jsonb_build_object(
      'type', 'matched', 'tier', 'presence', 'ticket_id', r.id, 'user_id', r.user_id,
      'match', pg_catalog.jsonb_build_object('id', r.match_id, 'partner_id', r.partner_id,
        'created_at', r.ended_at, 'criteria', r.match_criteria)));
    if r.user_id = p_caller then
      v_mine := r;
    end if;
  end loop;
  return matchmaker._presence_envelope(p_caller, v_mine, 'claimed', null, s);
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Move (sharded tier): record the shard the caller is in, or pick one where a searcher waits alone.
-- ---------------------------------------------------------------------------------------------
create function matchmaker._presence_move(p_user uuid, p_shard_count integer, p_current integer,
  p_target integer, p_search_id uuid) returns jsonb
language plpgsql volatile
set search_path = ''
as $fn$
declare
  s matchmaker.presence_settings;
  r matchmaker.presence_searches;
  v_now timestamptz;
  v_target integer;
  v_out jsonb;
begin
  perform matchmaker._require_user(p_user);
  if p_shard_count is null or p_shard_count < 1 or p_shard_count > 100000 then
    raise exception 'matchmaker: invalid argument: shard_count must be between 1 and 100000' using errcode = '22023';
  end if;
  if p_current is null or p_current < 0 or p_current >= p_shard_count then
    raise exception 'matchmaker: invalid argument: current_shard must be in [0, shard_count)' using errcode = '22023';
  end if;
  if p_target is not null and (p_target < 0 or p_target >= p_shard_count) then
    raise exception 'matchmaker: invalid argument: target_shard must be in [0, shard_count)' using errcode = '22023';
  end if;
  s := matchmaker._presence_settings();
  -- Peek (unlocked) for the pool, then lock pool -> row, in that order.
  r := matchmaker._presence_row(p_user, p_search_id, false);
  if r.id is null or r.status <> 'searching' then
    return matchmaker._presence_envelope(p_user, r, 'not_searching', null, s) || '{"shard":null}'::jsonb;
  end if;
  perform pg_catalog.pg_advisory_xact_lock(1835887478, pg_catalog.hashtext(r.pool));
  select * into r from matchmaker.presence_searches as x where x.id = r.id for update;
  v_now := pg_catalog.clock_timestamp();
  if r.status <> 'searching' or r.expires_at <= v_now then
    return matchmaker._presence_envelope(p_user, r, 'not_searching', null, s) || '{"shard":null}'::jsonb;
  end if;

  v_target := p_target;
  if v_target is null then
    with members as (
      select x.shard, x.started_at, x.user_id::text as uid from matchmaker.presence_searches as x
      where x.pool = r.pool and x.status = 'searching' and x.expires_at > v_now
        and x.user_id <> p_user and x.shard is not null and x.shard < p_shard_count
      union all
      select p_current, r.started_at, r.user_id::text
    ), shards as (
      select m.shard, pg_catalog.count(*) as n, pg_catalog.min(m.started_at) as oldest, pg_catalog.min(m.uid) as uid
      from members as m group by m.shard
    )
    select sh.shard into v_target from shards as sh
    where sh.n % 2 = 1
    order by sh.oldest, sh.uid, sh.shard
    limit 1;
    v_target := coalesce(v_target, p_current);
  end if;

  update matchmaker.presence_searches as x set shard = v_target where x.id = r.id returning * into r;
  v_out := matchmaker._presence_envelope(p_user, r, case when v_target = p_current then 'stayed' else 'moved' end, null, s);
  return v_out || pg_catalog.jsonb_build_object('shard', v_target);
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Maintenance (optional: clients do not depend on it). Closes expired searches (notifying their
-- users) and prunes history older than history_retention, in bounded batches.
-- ---------------------------------------------------------------------------------------------
create function matchmaker.presence_cleanup(batch integer default 1000) returns jsonb
language plpgsql volatile
set search_path = ''
as $fn$
declare
  s matchmaker.presence_settings := matchmaker._presence_settings();
  r matchmaker.presence_searches;
  v_now timestamptz := pg_catalog.clock_timestamp();
  v_expired integer := 0;
  v_pruned integer;
begin
  for r in
    select * from matchmaker.presence_searches as x
    where x.status = 'searching' and x.expires_at <= v_now
    order by x.expires_at limit batch
    for update skip locked
  loop
    perform matchmaker._presence_close(r, 'expired', 'ttl', v_now);
    v_expired := v_expired + 1;
  end loop;
  with old as (
    select x.id from matchmaker.presence_searches as x
    where x.status <> 'searching' and x.ended_at < v_now - s.history_retention
    limit batch
  )
  delete from matchmaker.presence_searches as x using old where x.id = old.id;
  get diagnostics v_pruned = row_count;
  return pg_catalog.jsonb_build_object('expired', v_expired, 'pruned', v_pruned);
end
$fn$;

create function matchmaker.presence_forget_user(user_id uuid) returns jsonb
language plpgsql volatile
set search_path = ''
as $fn$
declare
  v_n integer;
begin
  delete from matchmaker.presence_searches as x where x.user_id = presence_forget_user.user_id;
  get diagnostics v_n = row_count;
  return pg_catalog.jsonb_build_object('searches', v_n);
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Public RPC wrappers (PostgREST exposes schema public). SECURITY DEFINER, empty search_path.
-- ---------------------------------------------------------------------------------------------
create function public.matchmaker_presence_begin(criteria jsonb default '{}'::jsonb, search_id uuid default null,
  shard integer default null) returns jsonb
language sql volatile security definer
set search_path = ''
as $fn$
  select matchmaker._presence_begin(auth.uid(), criteria, search_id, shard)
$fn$;
comment on function public.matchmaker_presence_begin(jsonb, uuid, integer) is
  'Presence tiers: open (or return) auth.uid()''s search. Returns {status, result: created|existing, search, ...}.';

create function public.matchmaker_presence_end(search_id uuid default null) returns jsonb
language sql volatile security definer
set search_path = ''
as $fn$
  select matchmaker._presence_end(auth.uid(), search_id)
$fn$;
comment on function public.matchmaker_presence_end(uuid) is
  'Presence tiers: withdraw the search. result cancelled (never matched afterwards) | already_matched (with the match) | not_searching.';

create function public.matchmaker_presence_heartbeat(search_id uuid default null) returns jsonb
language sql volatile security definer
set search_path = ''
as $fn$
  select matchmaker._presence_heartbeat(auth.uid(), search_id)
$fn$;
comment on function public.matchmaker_presence_heartbeat(uuid) is
  'Presence tiers: keep the search claimable for another search_ttl. Returns the current state.';

create function public.matchmaker_presence_state(search_id uuid default null) returns jsonb
language sql stable security definer
set search_path = ''
as $fn$
  select matchmaker._presence_state(auth.uid(), search_id)
$fn$;
comment on function public.matchmaker_presence_state(uuid) is
  'Presence tiers: current state of auth.uid()''s search (or of the given one): searching, matched (with match), cancelled, expired, superseded or idle.';

create function public.matchmaker_presence_claim(user_a uuid, user_b uuid) returns jsonb
language sql volatile security definer
set search_path = ''
as $fn$
  select matchmaker._presence_claim(auth.uid(), user_a, user_b)
$fn$;
comment on function public.matchmaker_presence_claim(uuid, uuid) is
  'Presence tiers: pair two searching users; the caller must be one of them. result claimed (with match) | lost (with reason).';

create function public.matchmaker_presence_move(shard_count integer, current_shard integer,
  target_shard integer default null, search_id uuid default null) returns jsonb
language sql volatile security definer
set search_path = ''
as $fn$
  select matchmaker._presence_move(auth.uid(), shard_count, current_shard, target_shard, search_id)
$fn$;
comment on function public.matchmaker_presence_move(integer, integer, integer, uuid) is
  'Sharded presence tier: record the shard the caller moves to (target_shard), or let the database pick one where a searcher waits alone. Returns the state plus "shard".';

-- ---------------------------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC or anon; users get the six user RPCs; service_role the maintenance.
-- ---------------------------------------------------------------------------------------------
do $grants$
declare
  f regprocedure;
begin
  for f in
    select p.oid::regprocedure from pg_catalog.pg_proc as p
    join pg_catalog.pg_namespace as n on n.oid = p.pronamespace
    where (n.nspname = 'matchmaker' and (p.proname like '\_presence\_%' or p.proname like 'presence\_%'))
       or (n.nspname = 'public' and p.proname like 'matchmaker\_presence\_%')
  loop
    execute pg_catalog.format('revoke all on function %s from public, anon, authenticated, service_role', f);
  end loop;
end
$grants$;

grant execute on function public.matchmaker_presence_begin(jsonb, uuid, integer) to authenticated;
grant execute on function public.matchmaker_presence_end(uuid) to authenticated;
grant execute on function public.matchmaker_presence_heartbeat(uuid) to authenticated;
grant execute on function public.matchmaker_presence_state(uuid) to authenticated;
grant execute on function public.matchmaker_presence_claim(uuid, uuid) to authenticated;
grant execute on function public.matchmaker_presence_move(integer, integer, integer, uuid) to authenticated;
grant execute on function matchmaker.presence_cleanup(integer) to service_role;
grant execute on function matchmaker.presence_forget_user(uuid) to service_role;
