-- =============================================================================================
-- supabase-matchmaker: queue tier, maintenance pairs only the pools that can pair
-- (schema version 20261129000100)
-- =============================================================================================
--
-- WHY
--   The pool registry (matchmaker.pools) keeps every pool that ever had a ticket: rows are never
--   deleted, so a project with many criteria combinations (timezone x language x length, ...) ends
--   up with thousands of pools, most of them empty at any moment. Each maintenance step took the
--   next max_pools_per_step (64) registered pools after its cursor, took each pool's advisory lock
--   and called the pool's pairing function, whether or not the pool held anyone: a pass over 1,000
--   registered pools was 1,000 locks and 1,000 pairing calls that found nothing, in every
--   CALL matchmaker.run_maintenance() and every pg_cron run. Measured (2 batch workers, 20,000
--   waiting tickets in one pool): 39,700 matches/s with the one pool registered, 34,600 with 1,000
--   more empty pools registered (-13%).
--
-- WHAT CHANGES (same pairs, same order, same rows, same notifications)
--   matchmaker._maintenance_step (20261128000900's) picks its pairing pools among the registered
--   pools that hold at least two tickets at or after their head hint (the newest matchmaker.pool_heads
--   row, a lower bound of the pool's live tickets: see 20261128000400). A pool with fewer cannot make
--   a pair: pairing happens within a pool. The test is two index probes per registered pool inside the
--   statement that reads the registry, where a skipped pool used to cost a lock and a function call.
--   Nothing else changes: expired tickets (step 1) and stale heartbeats (step 3) are found from the
--   tickets themselves, as before, and the cursor still walks the registry in pool order ("pools" in
--   the result counts the pools the step paired, as before).
--
-- INVARIANTS (the 20261128000100 and 20261128000900 headers)
--   * The candidate pools are read without locks, as before: a ticket inserted after that read is
--     paired by its own join (a join pairs on arrival) or by the next step, as a pool registered after
--     the read always was.
--   * No pool that can pair is skipped: a pool with two live tickets has two tickets at or after its
--     head hint. Tickets that are expired or stale still count here (a superset); the pairing function
--     skips them as before.
--
-- EXISTING DATA: nothing is rewritten.
-- =============================================================================================

do $prereq$
begin
  if pg_catalog.to_regprocedure('matchmaker._pair_pool_shared(text, integer, matchmaker.settings)') is null then
    raise exception 'matchmaker: the busy-pools migration needs the parallel-batch migration'
      using errcode = '55000',
            hint = 'Apply every migration up to 20261128000900 first.';
  end if;
end
$prereq$;

insert into matchmaker.schema_migrations (version, name)
values ('20261129000100', 'matchmaker_queue_busy_pools')
on conflict (version) do nothing;

-- ---------------------------------------------------------------------------------------------
-- A maintenance step: 20261128000900's, with the pairing pools chosen among those that can pair.
-- ---------------------------------------------------------------------------------------------
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
  v_shared boolean;
  v_key record;
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
    -- Only pools with two tickets at or after their head hint can pair: the others are skipped here,
    -- in this statement, instead of being locked and searched one function call at a time. The hint
    -- is read inline, as the join reads it: matchmaker._pool_hint() has a SET clause, so it is never
    -- inlined, and calling it per registered pool is the per-pool function call this step avoids.
    select coalesce(pg_catalog.array_agg(x.pool order by x.pool), '{}') into v_pair_pools
    from (select p.pool from matchmaker.pools as p
          where p.pool > coalesce(p_cursor, '')
            and (select pg_catalog.count(*) from (
                   select 1 from matchmaker.tickets as t
                   where t.pool = p.pool
                     and t.seq >= coalesce((select h.head_seq from matchmaker.pool_heads as h
                                            where h.pool = p.pool order by h.id desc limit 1), 0)
                   limit 2) as two) = 2
          order by p.pool limit v_room + 1) as x;
    if pg_catalog.cardinality(v_pair_pools) > v_room then
      v_more := true;
      v_pair_pools := v_pair_pools[1:v_room];
      v_next_cursor := v_pair_pools[v_room];
    end if;
  end if;

  -- Shared workers pair a pool only when no chunk needs a per-pair decision (see header).
  v_shared := v_budget > 0 and s.widen = '{}'::jsonb
    and not exists (select 1 from pg_catalog.jsonb_array_elements(s.criteria_keys) as e where e ->> 'match' = 'flexible')
    and matchmaker._hook_is_default();

  -- Locks in the global key order; exclusive for pools swept here (and for every pool when shared
  -- workers are off), shared for the others.
  v_locked := '{}';
  for v_key in
    select k.key, pg_catalog.bool_or(k.sweep) as sweep
    from (select pg_catalog.hashtext(p) as key, true as sweep from pg_catalog.unnest(v_sweep_pools) as p
          union all
          select pg_catalog.hashtext(p), false from pg_catalog.unnest(v_pair_pools) as p) as k
    group by k.key
    order by k.key
  loop
    if v_key.sweep or not v_shared then
      perform pg_catalog.pg_advisory_xact_lock(1835887475, v_key.key);
      v_locked := v_locked || v_key.key;
    else
      perform pg_catalog.pg_advisory_xact_lock_shared(1835887475, v_key.key);
    end if;
  end loop;
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
    if pg_catalog.hashtext(v_pool) = any (v_locked) then
      v_n := matchmaker._pair_pool(v_pool, v_budget - v_pairs, s);
    else
      v_n := matchmaker._pair_pool_shared(v_pool, v_budget - v_pairs, s);
    end if;
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
  --    Pools held here in shared mode are only TRIED in exclusive mode, like unlocked ones.
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

  -- 4. Housekeeping (rows another step is deleting are skipped, not waited for).
  if s.history_retention is not null then
    with old as (
      select hh.ticket_id from matchmaker.ticket_history as hh
      where hh.ended_at < v_now - s.history_retention limit s.sweep_batch
      for update skip locked
    )
    delete from matchmaker.ticket_history as hh using old where hh.ticket_id = old.ticket_id;
    get diagnostics v_pruned = row_count;
  end if;
  with old as (
    select ph.id from matchmaker.pool_heads as ph
    where exists (select 1 from matchmaker.pool_heads as newer where newer.pool = ph.pool and newer.id > ph.id)
    order by ph.id limit s.sweep_batch
    for update of ph skip locked
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

-- Privileges: a replaced function keeps its (revoked) grants; restated for the record.
revoke all on function matchmaker._maintenance_step(integer, text) from public, anon, authenticated, service_role;
