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
--   A BRIN index on ticket_history.ended_at in place of its btree was tried in the same hold and left
--     out: WAL per batch pair 3,550 -> 3,420 bytes, but backend CPU per pair not lower (0 to +2%; on
--     PostgreSQL 15 a BRIN insert costs about what the btree's rightmost-page insert does), the full
--     runs had the batch 3-5% behind, and hosts would lose the btree for history ordered by ended_at.
--
-- WHAT WAS CONSIDERED AND NOT DONE: one history row per match (matched tickets recorded by the match
--   row alone). It would save one heap row and its index entries per ticket, but ticket_history's
--   INSERTs per user are the documented `postgres_changes` notification channel (QueueStrategy
--   notify: 'postgres_changes', filter user_id=eq.<uid>), hosts and tests read matched outcomes from
--   it, and deleting a match (moderation, GDPR) would then also erase both tickets' outcomes, which
--   the state read and the join's idempotency check need. Not a change to make in one step.
--
-- EXISTING DATA: nothing is rewritten. Rows written by earlier versions are read exactly as before.
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
revoke all on function matchmaker._heartbeat(uuid, uuid) from public, anon, authenticated, service_role;
