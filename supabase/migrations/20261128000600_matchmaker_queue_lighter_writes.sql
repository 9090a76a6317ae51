-- =============================================================================================
-- supabase-matchmaker: queue tier, lighter writes (schema version 20261128000600)
-- =============================================================================================
--
-- WHY
--   What a join and a batch pair cost is now mostly the rows and index entries they write, not the
--   PL/pgSQL around them (bench/README.md "Queue tier"). This migration removes writes that no
--   reader needs, and the per-call planning left on the heartbeat. Same rules, same locks in the
--   same order, same answers, same rows in tickets / ticket_history / matches / realtime.messages.
--
-- WHAT CHANGES
--   * Pool registry: the statement trigger on tickets (a transition table, then an
--     INSERT ... ON CONFLICT into matchmaker.pools for every inserting statement, 18-25 us per
--     waiting join measured with track_functions) becomes a BEFORE INSERT row trigger that first
--     probes the registry and writes only when the pool is not registered yet. Any insert into
--     tickets still registers its pool (bulk loads too); a join into a known pool writes nothing
--     to matchmaker.pools.
--   * ticket_history: the btree on ended_at (read only by the retention prune) becomes a BRIN
--     index: the table is insert-only and ended_at follows insertion order, so new rows land in
--     page ranges that are not summarised yet and add no index entry at all (summarised later by
--     autovacuum, autosummarize = on). Two btree entries fewer per match (one per history row), one
--     per cancelled / expired ticket. The prune moves to matchmaker._prune_history (bitmap scan of
--     that BRIN index), called by matchmaker._maintenance_step (the 20261128000100 function, with
--     only its prune statement replaced by that call).
--   * matchmaker._heartbeat: the "alive" path (the ticket is open, live, not due to widen) is one
--     UPDATE with its JSON built inline (it called _require_user, _settings, _waiting_state,
--     _envelope, _ticket_json, _topic, _heartbeat_interval_ms: SQL functions with a SET clause,
--     planned again on every call); everything else goes to matchmaker._heartbeat_general, the
--     20261128000100 function renamed. public.matchmaker_heartbeat becomes PL/pgSQL (planned once
--     per session), as matchmaker_join and matchmaker_state did in 000400 / 000500.
--
-- MEASURED (A B in one lock hold, 2-core VM, pgbench driving PostgREST-shaped transactions on a fresh
--   20261128000500 database and a fresh one with this migration; bench/README.md "Queue tier")
--   Joins over 1,000 pools, 8 connections: median 3,605 -> 3,730 tps (+3.5%; C_tpcb of the hold ~5,200);
--     not confirmed by the full benchmark's round-robin rows (-12% to +7%): no established join gain.
--   Pool registry per waiting join: 18-20 us -> ~10 us of server time.
--   matchmaker_heartbeat ("alive"): 141-149 us -> 47-49 us of server time per call.
--   Batch: WAL per pair 3,550 -> 3,420 bytes; backend CPU per pair not lower (0 to +2%): on PostgreSQL 15
--     a BRIN insert costs about what the btree's rightmost-page insert did; the BRIN saves WAL and space.
--
-- WHAT WAS CONSIDERED AND NOT DONE: one history row per match (matched tickets recorded by the match
--   row alone). It would save one heap row and its index entries per ticket, but ticket_history's
--   INSERTs per user are the documented `postgres_changes` notification channel (QueueStrategy
--   notify: 'postgres_changes', filter user_id=eq.<uid>), hosts and tests read matched outcomes from
--   it, and deleting a match (moderation, GDPR) would then also erase both tickets' outcomes, which
--   the state read and the join's idempotency check need. Not a change to make in one step.
--
-- EXISTING DATA: nothing is rewritten. Rows written by earlier versions are read exactly as before;
--   the BRIN index is built over the existing history when this migration runs (one sequential scan
--   of ticket_history, under the migration's lock).
-- =============================================================================================

do $prereq$
begin
  if pg_catalog.to_regprocedure('matchmaker._normalize_criteria_general(jsonb, jsonb)') is null
     or pg_catalog.to_regprocedure('matchmaker._heartbeat(uuid, uuid)') is null then
    raise exception 'matchmaker: the lighter-writes migration needs the lean-paths migration'
      using errcode = '55000',
            hint = 'Apply 20261128000100, 20261128000400 and 20261128000500 first.';
  end if;
end
$prereq$;

insert into matchmaker.schema_migrations (version, name)
values ('20261128000600', 'matchmaker_queue_lighter_writes')
on conflict (version) do nothing;

-- ---------------------------------------------------------------------------------------------
-- Pool registry: a row trigger that writes only for a pool not registered yet.
-- ---------------------------------------------------------------------------------------------
create function matchmaker._register_pool() returns trigger
language plpgsql
set search_path = ''
as $fn$
begin
  if not exists (select 1 from matchmaker.pools as p where p.pool = new.pool) then
    insert into matchmaker.pools (pool) values (new.pool) on conflict (pool) do nothing;
  end if;
  return new;
end
$fn$;

drop trigger tickets_register_pools on matchmaker.tickets;
create trigger tickets_register_pool before insert on matchmaker.tickets
for each row execute function matchmaker._register_pool();
-- Pools registered by the old trigger stay; any pool of an open ticket that is missing (a ticket
-- inserted with triggers disabled) is registered now.
insert into matchmaker.pools (pool)
select distinct t.pool from matchmaker.tickets as t
where not exists (select 1 from matchmaker.pools as p where p.pool = t.pool)
on conflict (pool) do nothing;

-- ---------------------------------------------------------------------------------------------
-- ticket_history: BRIN on ended_at instead of a btree; the prune reads it.
-- ---------------------------------------------------------------------------------------------
drop index matchmaker.ticket_history_ended_at_idx;
create index ticket_history_ended_at_brin on matchmaker.ticket_history using brin (ended_at)
  with (autosummarize = on);

-- Deletes at most p_limit history rows that ended before p_before; returns how many.
create function matchmaker._prune_history(p_before timestamptz, p_limit integer) returns integer
language plpgsql volatile
set search_path = ''
set enable_seqscan = off
set enable_bitmapscan = on
set enable_indexscan = off
as $fn$
declare
  v_n integer;
begin
  with old as (
    select hh.ctid as row_id from matchmaker.ticket_history as hh
    where hh.ended_at < p_before limit p_limit
  )
  delete from matchmaker.ticket_history as hh using old where hh.ctid = old.row_id;
  get diagnostics v_n = row_count;
  return v_n;
end
$fn$;

-- The 20261128000100 maintenance step; only its history prune (a statement over the btree on
-- ended_at, dropped above) is replaced by a call to matchmaker._prune_history.
create or replace function matchmaker._maintenance_step(p_max_pairs integer, p_cursor text) returns jsonb
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
    v_pruned := matchmaker._prune_history(v_now - s.history_retention, s.sweep_batch);
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
-- Heartbeat: the "alive" path inline; everything else (another user's ticket, expired, stale,
-- due to widen, finished, no ticket) in the 20261128000100 function, renamed.
-- ---------------------------------------------------------------------------------------------
alter function matchmaker._heartbeat(uuid, uuid) rename to _heartbeat_general;

create function matchmaker._heartbeat(p_user uuid, p_ticket_id uuid) returns jsonb
language plpgsql volatile
set search_path = ''
set enable_seqscan = off
set enable_bitmapscan = off
as $fn$
declare
  v_timeout interval;
  v_found boolean;
  v_now timestamptz;
  t matchmaker.tickets;
begin
  if p_user is null then
    perform matchmaker._require_user(p_user);   -- raises 42501
  end if;
  select x.heartbeat_timeout, true into v_timeout, v_found from matchmaker.settings as x where x.singleton;
  if v_found is null then
    perform matchmaker._settings();   -- raises: the settings row is missing
  end if;
  v_now := pg_catalog.clock_timestamp();
  -- The general function's alive case: the user's own open ticket, not expired, not stale, not due
  -- to widen; only last_seen_at changes (a HOT update, the row lock only).
  if p_ticket_id is null then
    update matchmaker.tickets as x set last_seen_at = v_now
    where x.user_id = p_user
      and x.expires_at > v_now
      and not (v_timeout is not null and x.last_seen_at <= v_now - v_timeout)
      and not (x.widens_at is not null and x.widens_at <= v_now)
    returning * into t;
  else
    update matchmaker.tickets as x set last_seen_at = v_now
    where x.id = p_ticket_id and x.user_id = p_user
      and x.expires_at > v_now
      and not (v_timeout is not null and x.last_seen_at <= v_now - v_timeout)
      and not (x.widens_at is not null and x.widens_at <= v_now)
    returning * into t;
  end if;
  if t.id is null then
    return matchmaker._heartbeat_general(p_user, p_ticket_id);
  end if;
  return pg_catalog.jsonb_build_object(
    'status', 'waiting', 'result', 'alive',
    'ticket', pg_catalog.jsonb_build_object('id', t.id, 'criteria', t.criteria, 'pool', t.pool,
      'enqueued_at', t.enqueued_at, 'expires_at', t.expires_at, 'last_seen_at', t.last_seen_at,
      'widens_at', t.widens_at),
    'match', null, 'reason', null,
    'topic', 'matchmaker:user:' || p_user::text,
    'heartbeat_interval_ms', case when v_timeout is null then null
      else greatest(1000, (extract(epoch from v_timeout) * 1000 / 3)::integer) end,
    'server_time', pg_catalog.clock_timestamp());
end
$fn$;

-- The public wrapper in PL/pgSQL: planned once per session. Grants are kept by CREATE OR REPLACE.
create or replace function public.matchmaker_heartbeat(ticket_id uuid default null) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $fn$
begin
  return matchmaker._heartbeat(auth.uid(), ticket_id);
end
$fn$;

-- Privileges: new functions are internal; renamed and replaced ones keep their grants.
revoke all on function matchmaker._register_pool() from public, anon, authenticated, service_role;
revoke all on function matchmaker._prune_history(timestamptz, integer) from public, anon, authenticated, service_role;
revoke all on function matchmaker._heartbeat(uuid, uuid) from public, anon, authenticated, service_role;
