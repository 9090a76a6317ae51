-- =============================================================================================
-- supabase-matchmaker: queue tier, lean hot paths (schema version 20261128000500)
-- =============================================================================================
--
-- WHY
--   Per-call work that is not the decision: helpers re-planned on every call, loops of PL/pgSQL
--   statements where one statement does, and a state read that went through seven SQL helpers.
--   Same rules, same locks in the same order, same rows and the same JSON as before.
--
-- WHAT CHANGES
--   * matchmaker._normalize_criteria: a fast path for the common case (every declared key is
--     `exact` without a default, and the criteria are an object of declared keys with plain string
--     values): the criteria are already normal, so one statement checks that and returns them.
--     Everything else goes to matchmaker._normalize_criteria_general, the 20261128000100 function
--     renamed (its body is not repeated here).
--   * matchmaker._state (the poll / reconcile read, public.matchmaker_state): one PL/pgSQL function
--     with its JSON built inline (it called _require_user, _settings, _envelope, _topic,
--     _heartbeat_interval_ms, _ticket_json and _waiting_state/_history_state, SQL functions with a
--     SET clause, so none could be inlined and each was planned again on every call); the public
--     wrapper is PL/pgSQL, so its call is planned once per session.
--   * matchmaker._pair_pool (batch): when the pool has no flexible key, the FIFO rule pairs live
--     tickets in consecutive order (1 with 2, 3 with 4, ...) as long as the host hook accepts each
--     such pair; so the pairs of a chunk are chosen by ONE statement (an ordered index scan with
--     lead()) and the hook is asked once per pair, as the loop did. If the hook refuses any of them,
--     or the pool has flexible keys, the chunk goes to matchmaker._pair_pool_general (the
--     20261128000100 loop, renamed). Then _apply_pairs as before.
--   * matchmaker._broadcast: the rows now carry what realtime.send() of Supabase Realtime writes
--     since its migration 20251103001201 (broadcast_send_include_payload_id): the row id is also put
--     into the payload as "id" when the payload has none.
--   * matchmaker.schedule_maintenance / unschedule_maintenance read the pg_cron version through
--     matchmaker._pg_cron_version(), so the 1.5+ branch (seconds schedule) can be tested with a
--     clearly named stand-in (test/queue-sql/QueueSql.leanPaths.test.ts); real pg_cron 1.5 was not
--     run here (Debian ships 1.4).
--
-- MEASURED (pgbench driving PostgREST-shaped transactions, 000400 vs this migration in one lock hold,
--   2-core VM, track_functions; bench/README.md "Queue tier" has the full benchmark)
--   Join, server time inside public.matchmaker_join (one connection): 440 -> 314 us
--     (_normalize_criteria 54 -> 24 us; the rest is run-to-run noise of a shared machine).
--   Join, 8 connections over 1,000 pools: 2,209 -> 2,359 tps (C_tpcb of that hold: 2,621 tps).
--   matchmaker_state, 4 connections: 5,851 -> 8,128 calls/s; the same transaction around `select 1`
--     is the ceiling (the state read now costs about a third more than an empty call).
--   Batch (20K backlog): no measurable change (16.8K vs 16.2-17.0K matches/s): the set-based choice
--     saves ~2.6 ms per 1,000 pairs of ~56 ms; the rest is the rows and index entries every pair writes
--     (1 match, 2 history rows, 2 messages: 5 heap rows and 13 btree entries, most on random uuids),
--     and the payload "id" costs about as much as the choice saves.
--
-- WRITING realtime.messages DIRECTLY (20261128000400's _broadcast), CHECKED AGAINST SUPABASE REALTIME
--   Read in github.com/supabase/realtime (lib/realtime/tenants/repo/migrations and
--   lib/realtime/tenants/replication_connection.ex, snapshot of 2026-08-21):
--   * realtime.send() is a plain PL/pgSQL function, NOT security definer: it inserts
--     (id, payload, event, topic, private, extension = 'broadcast') into realtime.messages as the
--     calling role, after `SET LOCAL realtime.topic`, and turns any error into a WARNING. So a direct
--     INSERT by the same role meets exactly the same grants (INSERT is granted to postgres, anon,
--     authenticated, service_role) and the same RLS (none on INSERT unless the project adds one).
--   * realtime.messages is partitioned by range of inserted_at (migration 20241030150047,
--     messages_partitioning); partitions are created by the Realtime server, not by send() (removed
--     in 20241220123912). A direct insert goes to the same partition; if it is missing, both fail.
--   * Delivery: the Realtime server reads INSERTs on realtime.messages through logical replication
--     (a publication and a replication slot, replication_connection.ex), not through a trigger, so
--     it cannot tell a row written by send() from one written directly; it takes topic, event,
--     private, id and the payload from the row.
--   * Since 20251103001201 send() also writes the row id into the payload as "id" when absent: done
--     here too (below).
--   * A project policy FOR INSERT that checks realtime.topic() would refuse our multi-row insert
--     (the setting is not per row): then, as for any failure, each message is retried through
--     realtime.send() itself, which sets it. A notification still never aborts a match.
-- =============================================================================================

do $prereq$
begin
  if pg_catalog.to_regprocedure('matchmaker._broadcast(uuid[], text, jsonb[])') is null
     or pg_catalog.to_regprocedure('matchmaker._join_general(uuid, jsonb, uuid)') is null then
    raise exception 'matchmaker: the lean-paths migration needs the faster-join migration'
      using errcode = '55000',
            hint = 'Apply 20261128000100_matchmaker_queue.sql and 20261128000400_matchmaker_queue_faster_join.sql first.';
  end if;
end
$prereq$;

insert into matchmaker.schema_migrations (version, name)
values ('20261128000500', 'matchmaker_queue_lean_paths')
on conflict (version) do nothing;

-- ---------------------------------------------------------------------------------------------
-- Criteria: fast path, else the general function (20261128000100's, renamed).
-- ---------------------------------------------------------------------------------------------
alter function matchmaker._normalize_criteria(jsonb, jsonb) rename to _normalize_criteria_general;

create function matchmaker._normalize_criteria(p_criteria jsonb, p_keys jsonb, out pool text, out criteria jsonb)
language plpgsql stable
set search_path = ''
as $fn$
begin
  -- Already normal: every declared key is exact with no default, and the criteria are an object of
  -- declared keys with string values that are not "any" and at most 64 characters. The general
  -- function would return exactly these criteria, and their canonical text as the pool.
  if pg_catalog.jsonb_typeof(p_criteria) = 'object'
     and not exists (select 1 from pg_catalog.jsonb_array_elements(p_keys) as k
                     where k ? 'default' or coalesce(k ->> 'match', 'exact') <> 'exact')
     and not exists (select 1 from pg_catalog.jsonb_each(p_criteria) as e
                     where pg_catalog.jsonb_typeof(e.value) <> 'string'
                        or (e.value #>> '{}') in ('*', 'any')
                        or pg_catalog.length(e.value #>> '{}') > 64
                        or not (p_keys @> pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('key', e.key)))) then
    pool := p_criteria::text;
    criteria := p_criteria;
    return;
  end if;
  select n.pool, n.criteria into pool, criteria
  from matchmaker._normalize_criteria_general(p_criteria, p_keys) as n;
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- State (read-only): same answers as 20261128000100's _state, JSON built inline.
-- ---------------------------------------------------------------------------------------------
create or replace function matchmaker._state(p_user uuid, p_ticket_id uuid) returns jsonb
language plpgsql stable
set search_path = ''
set enable_seqscan = off
set enable_bitmapscan = off
as $fn$
declare
  v_timeout interval;
  v_found boolean;
  v_hb integer;
  v_topic text;
  v_expired boolean;
  t matchmaker.tickets;
  h matchmaker.ticket_history;
begin
  if p_user is null then
    perform matchmaker._require_user(p_user);   -- raises 42501
  end if;
  select x.heartbeat_timeout, true into v_timeout, v_found from matchmaker.settings as x where x.singleton;
  if v_found is null then
    perform matchmaker._settings();   -- raises: the settings row is missing
  end if;
  v_hb := case when v_timeout is null then null
    else greatest(1000, (extract(epoch from v_timeout) * 1000 / 3)::integer) end;
  v_topic := 'matchmaker:user:' || p_user::text;
  if p_ticket_id is null then
    select * into t from matchmaker.tickets as x where x.user_id = p_user;
  else
    select * into t from matchmaker.tickets as x where x.id = p_ticket_id;
  end if;
  if t.id is not null then
    if t.user_id <> p_user then
      raise exception 'matchmaker: ticket belongs to another user' using errcode = 'MM409';
    end if;
    v_expired := t.expires_at <= pg_catalog.clock_timestamp();
    return pg_catalog.jsonb_build_object(
      'status', case when v_expired then 'expired' else 'waiting' end,
      'result', 'state',
      'ticket', pg_catalog.jsonb_build_object('id', t.id, 'criteria', t.criteria, 'pool', t.pool,
        'enqueued_at', t.enqueued_at, 'expires_at', t.expires_at, 'last_seen_at', t.last_seen_at,
        'widens_at', t.widens_at),
      'match', null,
      'reason', case when v_expired then 'ttl' end,
      'topic', v_topic, 'heartbeat_interval_ms', v_hb, 'server_time', pg_catalog.clock_timestamp());
  end if;
  if p_ticket_id is null then
    select * into h from matchmaker.ticket_history as x where x.user_id = p_user order by x.ended_at desc limit 1;
  else
    select * into h from matchmaker.ticket_history as x where x.ticket_id = p_ticket_id;
  end if;
  if h.ticket_id is null then
    return pg_catalog.jsonb_build_object('status', 'idle', 'result', 'state', 'ticket', null, 'match', null,
      'reason', null, 'topic', v_topic, 'heartbeat_interval_ms', v_hb, 'server_time', pg_catalog.clock_timestamp());
  end if;
  if h.user_id <> p_user then
    raise exception 'matchmaker: ticket belongs to another user' using errcode = 'MM409';
  end if;
  return pg_catalog.jsonb_build_object(
    'status', h.outcome, 'result', 'state',
    'ticket', pg_catalog.jsonb_build_object('id', h.ticket_id, 'criteria', h.criteria, 'pool', h.pool,
      'enqueued_at', h.enqueued_at, 'ended_at', h.ended_at),
    'match', case when h.outcome = 'matched' then pg_catalog.jsonb_build_object('id', h.match_id,
      'partner_id', h.partner_id, 'created_at', h.ended_at, 'criteria', h.match_criteria) end,
    'reason', h.reason, 'topic', v_topic, 'heartbeat_interval_ms', v_hb,
    'server_time', pg_catalog.clock_timestamp());
end
$fn$;

-- The public wrapper in PL/pgSQL: planned once per session (a SQL function with SET is planned on
-- every call). Still STABLE and SECURITY DEFINER; grants are kept by CREATE OR REPLACE.
create or replace function public.matchmaker_state(ticket_id uuid default null) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $fn$
begin
  return matchmaker._state(auth.uid(), ticket_id);
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Batch pairing of one pool: the pairs of a chunk in one statement when the pool has no flexible
-- key and the host hook accepts every consecutive pair; otherwise the general loop.
-- Caller holds the pool lock (as before).
-- ---------------------------------------------------------------------------------------------
alter function matchmaker._pair_pool(text, integer, matchmaker.settings) rename to _pair_pool_general;

create function matchmaker._pair_pool(p_pool text, p_budget integer, s matchmaker.settings) returns integer
language plpgsql volatile
set search_path = ''
set jit = off
as $fn$
declare
  v_now timestamptz := pg_catalog.clock_timestamp();
  v_hint bigint;
  v_a uuid[];
  v_b uuid[];
  v_ok boolean;
begin
  if p_budget <= 0 then
    return 0;
  end if;
  if s.widen <> '{}'::jsonb
     or exists (select 1 from pg_catalog.jsonb_array_elements(s.criteria_keys) as e where e ->> 'match' = 'flexible') then
    return matchmaker._pair_pool_general(p_pool, p_budget, s);
  end if;
  v_hint := coalesce((select h.head_seq from matchmaker.pool_heads as h
                      where h.pool = p_pool order by h.id desc limit 1), 0);
  -- Without flexible keys every two tickets of a pool are compatible, so the FIFO rule (each ticket
  -- in seq order claims the oldest waiting one it may pair with) pairs consecutive live tickets as
  -- long as the hook accepts each (older, newer) pair: the hook is asked exactly those questions.
  select coalesce(pg_catalog.array_agg(x.a order by x.n), '{}'), coalesce(pg_catalog.array_agg(x.b order by x.n), '{}'),
         coalesce(pg_catalog.bool_and(coalesce(matchmaker.is_eligible(x.ua, x.ub), false)), true)
  into v_a, v_b, v_ok
  from (
    select c.id as a, c.user_id as ua, pg_catalog.lead(c.id) over w as b, pg_catalog.lead(c.user_id) over w as ub,
           pg_catalog.row_number() over w as n
    from (select t.id, t.user_id, t.seq from matchmaker.tickets as t
          where t.pool = p_pool and t.seq >= v_hint and t.expires_at > v_now
            and (s.heartbeat_timeout is null or t.last_seen_at > v_now - s.heartbeat_timeout)
          order by t.seq
          limit 2 * p_budget) as c
    window w as (order by c.seq)
  ) as x
  where x.n % 2 = 1 and x.b is not null;
  if not v_ok then
    return matchmaker._pair_pool_general(p_pool, p_budget, s);
  end if;
  if pg_catalog.cardinality(v_a) = 0 then
    return 0;
  end if;
  perform matchmaker._apply_pairs(v_a, v_b, pg_catalog.clock_timestamp(), s.widen);
  perform matchmaker._settle_pool(p_pool, v_hint);
  return pg_catalog.cardinality(v_a);
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Broadcast rows as Supabase's realtime.send() writes them (see header): the row id is also the
-- payload's "id" when the payload has none. Otherwise as in 20261128000400.
-- ---------------------------------------------------------------------------------------------
create or replace function matchmaker._broadcast(p_users uuid[], p_event text, p_payloads jsonb[]) returns integer
language plpgsql volatile
set search_path = ''
as $fn$
declare
  v_n integer := coalesce(pg_catalog.cardinality(p_users), 0);
  i integer;
begin
  if v_n = 0 then
    return 0;
  end if;
  begin
    insert into realtime.messages (id, payload, event, topic, private, extension)
    select m.id,
           case when m.payload ? 'id' then m.payload
                else m.payload || pg_catalog.jsonb_build_object('id', m.id) end,
           p_event, 'matchmaker:user:' || m.user_id::text, true, 'broadcast'
    from (select gen_random_uuid() as id, u.user_id, u.payload
          from unnest(p_users, p_payloads) as u(user_id, payload)) as m;
  exception when others then
    for i in 1 .. v_n loop
      perform realtime.send(p_payloads[i], p_event, 'matchmaker:user:' || p_users[i]::text, true);
    end loop;
  end;
  return v_n;
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- pg_cron: the installed version through one function (null: not installed), so the scheduling
-- branch for 1.5+ can be tested with a stand-in where only 1.4 exists. Same schedules as before.
-- ---------------------------------------------------------------------------------------------
create function matchmaker._pg_cron_version() returns text
language sql stable
set search_path = ''
as $fn$
  select e.extversion from pg_catalog.pg_extension as e where e.extname = 'pg_cron'
$fn$;

create or replace function matchmaker.schedule_maintenance(every interval default interval '5 seconds') returns text
language plpgsql volatile
set search_path = ''
as $fn$
declare
  v_version text := matchmaker._pg_cron_version();
  v_major integer;
  v_minor integer;
  v_seconds integer;
  v_schedule text;
  v_command text;
begin
  if v_version is null then
    raise exception 'matchmaker: pg_cron is not installed in this database'
      using errcode = '55000',
            hint = 'Enable it (create extension pg_cron) and call select matchmaker.schedule_maintenance(); or call matchmaker_process() from a scheduler of your own.';
  end if;
  v_major := (pg_catalog.regexp_match(v_version, '^(\d+)'))[1]::integer;
  v_minor := coalesce((pg_catalog.regexp_match(v_version, '^\d+\.(\d+)'))[1]::integer, 0);
  v_seconds := greatest(1, least(59, ceil(extract(epoch from every))::integer));
  if v_major > 1 or (v_major = 1 and v_minor >= 5) then
    -- pg_cron 1.5+: '<n> seconds' schedules (1-59 s); each run drains and returns.
    v_schedule := v_seconds::text || ' seconds';
    v_command := 'call matchmaker.run_maintenance()';
  else
    -- pg_cron 1.4: per-minute schedules only; the job loops for 50 s, sweeping every `every`.
    v_schedule := '* * * * *';
    v_command := pg_catalog.format('call matchmaker.run_maintenance(%L::interval, %L::interval)',
      '50 seconds', v_seconds::text || ' seconds');
  end if;
  perform matchmaker.unschedule_maintenance();
  execute 'select cron.schedule($1, $2, $3)' using 'matchmaker-maintenance', v_schedule, v_command;
  return pg_catalog.format('pg_cron %s: job matchmaker-maintenance, schedule %L, command %s', v_version, v_schedule, v_command);
end
$fn$;

create or replace function matchmaker.unschedule_maintenance() returns boolean
language plpgsql volatile
set search_path = ''
as $fn$
declare
  v_job bigint;
begin
  if matchmaker._pg_cron_version() is null then
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

-- Privileges: new functions are internal; renamed and replaced ones keep their (revoked) grants.
revoke all on function matchmaker._normalize_criteria(jsonb, jsonb) from public, anon, authenticated, service_role;
revoke all on function matchmaker._pair_pool(text, integer, matchmaker.settings) from public, anon, authenticated, service_role;
revoke all on function matchmaker._pg_cron_version() from public, anon, authenticated, service_role;
