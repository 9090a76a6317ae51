-- =============================================================================================
-- supabase-matchmaker: queue tier, parallel batch pairing (schema version 20261128000900)
-- =============================================================================================
--
-- WHY
--   The batch path (CALL matchmaker.run_maintenance(), matchmaker_process) pairs a pool in chunks of
--   settings.batch_pairs pairs, each chunk under the pool's EXCLUSIVE advisory lock, so one pool is
--   drained by one backend on one core however many maintenance sessions run. What a chunk costs is
--   almost all writing (per pair: 1 match, 2 history rows, 2 realtime.messages rows), which two
--   backends can do side by side. This migration lets several maintenance sessions drain the SAME
--   pool at once, and writes each chunk's rows in one statement instead of four.
--
-- WHAT CHANGES (same rule, same rows, same JSON, same notifications)
--   * Batch workers share a pool. In a pool whose pairing needs no per-pair decision (no flexible
--     criteria key, no widening, and the shipped eligibility hook: matchmaker._hook_is_default()),
--     the FIFO rule pairs consecutive live tickets (1 with 2, 3 with 4, ...), so disjoint runs of
--     consecutive tickets can be paired by different sessions. There, _maintenance_step takes the
--     pool lock in SHARED mode (pg_advisory_xact_lock_shared, same key) and pairs with
--     matchmaker._pair_pool_shared:
--       claim (serialised among batch workers by a short SESSION advisory lock on the pool,
--       namespace 1835887479, released before the writes and on any error):
--         the first 2 * budget live tickets of the pool in seq order that no other worker holds:
--         SELECT ... ORDER BY seq LIMIT 2 * budget FOR KEY SHARE SKIP LOCKED (a ticket another worker
--         claimed is deleted by it, so locked FOR UPDATE: skipped; a ticket whose heartbeat is being
--         written is locked FOR NO KEY UPDATE, which KEY SHARE does not conflict with: NOT skipped);
--         paired 1 with 2, 3 with 4, ... in that statement; then DELETE of the paired tickets by
--         tuple id (waits for such a heartbeat; the odd last ticket of a pool's tail stays unclaimed);
--       write (in parallel): matches, history, notifications of the claimed pairs; settle the head.
--     Every other writer of the pool (join, cancel, heartbeat repair, expiry and stale sweeps,
--     forget_user, a chunk needing the general loop) keeps the EXCLUSIVE lock, so none interleaves
--     with a batch chunk; a chunk of a pool with flexible keys or a replaced hook runs as before.
--     Why it is the serial answer: claims are serialised and each takes the next unclaimed live
--     tickets, so the claimed tickets always form a prefix of the pool's live tickets, every claim is
--     a run of consecutive live tickets, and every claim but the tail's has even length: pairing
--     each claim consecutively pairs the pool consecutively, exactly as one worker would.
--   * Writing a chunk: matchmaker._record_pairs writes the matches, both history rows and both
--     notifications of every pair in ONE statement (the match ids and message ids drawn once per row,
--     one scan per ticket instead of a UNION ALL of two joins, the payload built once with its "id"),
--     where 20261128000400/500 ran a CTE of four parts and then matchmaker._broadcast. The statement
--     runs in one subtransaction (as _broadcast's insert did); if it fails, it is redone without the
--     notifications, which are then sent one by one through realtime.send(), which only warns: as
--     before, a notification never aborts a match. matchmaker._apply_pairs (every pairing path: the
--     general join, heartbeat, serial batch) deletes the tickets and calls it.
--   * Several sessions: run CALL matchmaker.run_maintenance() from N sessions, or schedule N pg_cron
--     jobs with matchmaker.schedule_maintenance(every, workers); unschedule_maintenance() removes
--     them all. The housekeeping deletes of a step skip rows another step is deleting (SKIP LOCKED).
--
-- INVARIANTS (the 20261128000100 header, re-checked for shared batch workers)
--   * No double match / ticket ended once: a ticket is paired only by the transaction that deleted
--     it (DELETE count checked; a mismatch raises 40001 and rolls the chunk back).
--   * No stranded pairs once quiet: the claimed tickets are a prefix of the live ones and only the
--     pool's tail claim can be odd, so at most one live ticket of the pool is left unpaired by
--     batch workers; joins and heartbeats never run concurrently with them (exclusive lock).
--   * FIFO: as above, identical to the one-worker pairing (the hook is not asked: it is the default).
--     After a worker's transaction aborts (an error), its tickets are unclaimed again and the next
--     claim takes them first, before later tickets.
--   * pool_heads: each head is the smallest seq visible to its writer while it holds the pool lock;
--     rows another worker is deleting are still visible to it, nothing can be inserted below it
--     (inserts need the exclusive lock and take a later seq), so every head stays a lower bound.
--   * Locks: user -> pool (shared or exclusive, in the global key order) -> claim lock -> rows. The
--     claim lock is only ever taken while holding the same pool's shared lock and only waits for
--     row locks of heartbeats (which hold one row and wait for nothing) or of a later claim of the
--     same pool's tickets after an abort; no cycle exists. A worker asking for the shared lock while
--     a join waits for the exclusive one queues behind the join (Postgres grants no new shared lock
--     over a waiting exclusive request), and the join waits only for chunks already running.
--
-- MEASURED (2-core VM shared with other work; 20,000 waiting tickets in one pool, CALL
--   matchmaker.run_maintenance() from 1 or 2 sessions; A B A B, 5 rounds, medians; pgbench TPC-B
--   -c 8 -j 2 -T 20 in the same lock hold; bench/README.md "Queue tier", session 4)
--   before this migration, 1 worker   14,664 matches/s   (5.07x C_tpcb 2,893 tps)
--   before this migration, 2 workers  14,721             (the exclusive lock serialises them)
--   this migration, 1 worker          17,391             (6.01x: the one-statement writer, the leaner claim)
--   this migration, 2 workers         26,406             (9.13x; rounds 22,587-31,195)
--   The full benchmark (npm run bench -- queue, C_tpcb 3,181): 18,404 / 16,801 / 20,541 / 29,527 (9.28x).
--   So the issue's "batch >= 10x C_tpcb" is NOT reached on this 2-core VM (9.1-9.3x with 2 workers).
--   Where the time goes (one worker, per 1,000 pairs, ~50 ms): the rows and their 13 btree entries
--   per pair, ~14% building the two JSON payloads (jsonb_build_object resolves its argument types on
--   every call), ~5% gen_random_uuid (3 per pair); the claim (serialised: SELECT 3.5 ms + DELETE
--   2.3 ms, pg_stat_statements on a profiling cluster) is ~10% of it, which bounds 2 workers at ~1.8x.
--
-- WHAT WAS TRIED AND NOT DONE
--   * A replaced eligibility hook with shared workers: a refusal changes every later pair of the
--     pool (FIFO pairs around it), and claims after it may already be committed by other workers;
--     such pools keep one worker at a time (exclusive lock), as before.
--   * FOR UPDATE SKIP LOCKED as the claim: it also skips a ticket whose heartbeat is in flight,
--     which would then be paired out of FIFO order (and could be left beside a tail ticket); with it,
--     the heartbeat test of test/queue-sql/QueueSql.parallelBatch.test.ts failed 3 runs out of 3.
--   * Deleting the claimed tickets by ticket id inside the claim (an index probe per ticket): 7.4 ms
--     per 1,000 pairs of serialised time where the delete by tuple id takes 2.3-4.2 ms (a timing A B
--     of the variants was within this machine's noise); the claim is what two workers cannot share.
--   * Building the payloads as text and casting to jsonb: ~20% cheaper than jsonb_build_object for
--     that part alone (~3% of a chunk), not worth hand-written JSON.
--   * More workers than cores: 3 and 4 workers were no faster than 2 on this 2-core VM.
-- =============================================================================================

do $prereq$
begin
  if pg_catalog.to_regprocedure('matchmaker._pair_pool_general(text, integer, matchmaker.settings)') is null
     or pg_catalog.to_regprocedure('matchmaker._broadcast(uuid[], text, jsonb[])') is null
     or pg_catalog.to_regprocedure('matchmaker._register_pool()') is null
     or pg_catalog.to_regprocedure('matchmaker._maintenance_step(integer, text)') is null then
    raise exception 'matchmaker: the parallel-batch migration needs the lighter-writes migration'
      using errcode = '55000',
            hint = 'Apply 20261128000100, 20261128000400, 20261128000500 and 20261128000600 first.';
  end if;
end
$prereq$;

insert into matchmaker.schema_migrations (version, name)
values ('20261128000900', 'matchmaker_queue_parallel_batch')
on conflict (version) do nothing;

-- ---------------------------------------------------------------------------------------------
-- Is matchmaker.is_eligible still the shipped default (always true)? Either the 20261128000100
-- SQL function or the PL/pgSQL one of 20261128000800. Anything else counts as a host hook.
-- ---------------------------------------------------------------------------------------------
create function matchmaker._hook_is_default() returns boolean
language sql stable
set search_path = ''
as $fn$
  select coalesce((
    select (l.lanname = 'sql' and pg_catalog.btrim(p.prosrc, E' \t\r\n') = 'select true')
        or (l.lanname = 'plpgsql'
            and pg_catalog.regexp_replace(pg_catalog.btrim(p.prosrc, E' \t\r\n'), '\s+', ' ', 'g') = 'begin return true; end')
    from pg_catalog.pg_proc as p
    join pg_catalog.pg_language as l on l.oid = p.prolang
    where p.oid = pg_catalog.to_regprocedure('matchmaker.is_eligible(uuid, uuid)')
  ), false)
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Writes the pairs (a[i] older, b[i] newer; their tickets already deleted by the caller): the
-- matches, both history rows and both 'matched' notifications, in one statement (see header).
-- Returns the number of pairs.
-- ---------------------------------------------------------------------------------------------
create function matchmaker._record_pairs(p_now timestamptz, p_widen jsonb,
  a_id uuid[], a_user uuid[], a_pool text[], a_crit jsonb[], a_enq timestamptz[],
  b_id uuid[], b_user uuid[], b_pool text[], b_crit jsonb[], b_enq timestamptz[])
returns integer
language plpgsql volatile
set search_path = ''
set jit = off
set plan_cache_mode = force_generic_plan
as $fn$
declare
  v_pairs integer := coalesce(pg_catalog.cardinality(a_id), 0);
  v_users uuid[];
  v_payloads jsonb[];
  i integer;
begin
  if v_pairs = 0 then
    return 0;
  end if;
  begin
    with x as materialized (
      select gen_random_uuid() as mid, gen_random_uuid() as na, gen_random_uuid() as nb,
             u.ia, u.ua, u.pa, u.ca, u.ea, u.ib, u.ub, u.pb, u.cb, u.eb,
             case when u.ca = u.cb and p_widen = '{}'::jsonb then u.ca
                  else matchmaker._meet(matchmaker._effective(u.ca, u.ea, p_now, p_widen),
                                        matchmaker._effective(u.cb, u.eb, p_now, p_widen)) end as mc
      from unnest(a_id, a_user, a_pool, a_crit, a_enq, b_id, b_user, b_pool, b_crit, b_enq)
        as u(ia, ua, pa, ca, ea, ib, ub, pb, cb, eb)
    ), m as (
      insert into matchmaker.matches (id, user_a, user_b, ticket_a, ticket_b, pool, criteria, created_at)
      select x.mid, x.ua, x.ub, x.ia, x.ib, x.pa, x.mc, p_now from x
    ), e as materialized (
      select x.mid, x.mc, s.tid, s.uid, s.partner, s.pool, s.crit, s.enq, s.nid
      from x cross join lateral (values (x.ia, x.ua, x.ub, x.pa, x.ca, x.ea, x.na),
                                        (x.ib, x.ub, x.ua, x.pb, x.cb, x.eb, x.nb))
        as s(tid, uid, partner, pool, crit, enq, nid)
    ), h as (
      insert into matchmaker.ticket_history
        (ticket_id, user_id, outcome, reason, match_id, partner_id, match_criteria, pool, criteria, enqueued_at, ended_at)
      select e.tid, e.uid, 'matched', null, e.mid, e.partner, e.mc, e.pool, e.crit, e.enq, p_now from e
    )
    insert into realtime.messages (id, payload, event, topic, private, extension)
    select e.nid,
           pg_catalog.jsonb_build_object('type', 'matched', 'ticket_id', e.tid, 'user_id', e.uid,
             'match', pg_catalog.jsonb_build_object('id', e.mid, 'partner_id', e.partner,
               'created_at', p_now, 'criteria', e.mc),
             'id', e.nid),
           'matched', 'matchmaker:user:' || e.uid::text, true, 'broadcast'
    from e;
  exception when others then
    -- The notifications could not be inserted (a project policy, a missing partition, ...): write
    -- the pairs without them, then send each through realtime.send(), which only warns.
    with x as materialized (
      select gen_random_uuid() as mid,
             u.ia, u.ua, u.pa, u.ca, u.ea, u.ib, u.ub, u.pb, u.cb, u.eb,
             case when u.ca = u.cb and p_widen = '{}'::jsonb then u.ca
                  else matchmaker._meet(matchmaker._effective(u.ca, u.ea, p_now, p_widen),
                                        matchmaker._effective(u.cb, u.eb, p_now, p_widen)) end as mc
      from unnest(a_id, a_user, a_pool, a_crit, a_enq, b_id, b_user, b_pool, b_crit, b_enq)
        as u(ia, ua, pa, ca, ea, ib, ub, pb, cb, eb)
    ), m as (
      insert into matchmaker.matches (id, user_a, user_b, ticket_a, ticket_b, pool, criteria, created_at)
      select x.mid, x.ua, x.ub, x.ia, x.ib, x.pa, x.mc, p_now from x
    ), h as (
      insert into matchmaker.ticket_history
        (ticket_id, user_id, outcome, reason, match_id, partner_id, match_criteria, pool, criteria, enqueued_at, ended_at)
      select s.tid, s.uid, 'matched', null, x.mid, s.partner, x.mc, s.pool, s.crit, s.enq, p_now
      from x cross join lateral (values (x.ia, x.ua, x.ub, x.pa, x.ca, x.ea),
                                        (x.ib, x.ub, x.ua, x.pb, x.cb, x.eb))
        as s(tid, uid, partner, pool, crit, enq)
      returning ticket_id, user_id, match_id, partner_id, match_criteria
    )
    select pg_catalog.array_agg(h.user_id),
           pg_catalog.array_agg(pg_catalog.jsonb_build_object(
             'type', 'matched', 'ticket_id', h.ticket_id, 'user_id', h.user_id,
             'match', pg_catalog.jsonb_build_object('id', h.match_id, 'partner_id', h.partner_id,
               'created_at', p_now, 'criteria', h.match_criteria)))
    into v_users, v_payloads
    from h;
    for i in 1 .. coalesce(pg_catalog.cardinality(v_users), 0) loop
      perform realtime.send(v_payloads[i], 'matched', 'matchmaker:user:' || v_users[i]::text, true);
    end loop;
  end;
  return v_pairs;
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Pairs tickets: p_a[i] (older) with p_b[i]. Same contract as before (caller holds the pool locks;
-- deletes the tickets, creates the matches, records both tickets in history, notifies both users;
-- returns the number of pairs); the rows are now written by matchmaker._record_pairs.
-- ---------------------------------------------------------------------------------------------
create or replace function matchmaker._apply_pairs(p_a uuid[], p_b uuid[], p_now timestamptz, p_widen jsonb)
returns integer
language plpgsql volatile
set search_path = ''
set jit = off
set plan_cache_mode = force_generic_plan
as $fn$
declare
  v_pairs integer := coalesce(pg_catalog.cardinality(p_a), 0);
  v_count integer;
  a_id uuid[]; a_user uuid[]; a_pool text[]; a_crit jsonb[]; a_enq timestamptz[];
  b_id uuid[]; b_user uuid[]; b_pool text[]; b_crit jsonb[]; b_enq timestamptz[];
begin
  if v_pairs = 0 then
    return 0;
  end if;
  with gone as (
    delete from matchmaker.tickets as t
    where t.id = any (p_a || p_b)
    returning t.id, t.user_id, t.pool, t.criteria, t.enqueued_at
  )
  select pg_catalog.count(*)::integer,
         pg_catalog.array_agg(ta.id), pg_catalog.array_agg(ta.user_id), pg_catalog.array_agg(ta.pool),
         pg_catalog.array_agg(ta.criteria), pg_catalog.array_agg(ta.enqueued_at),
         pg_catalog.array_agg(tb.id), pg_catalog.array_agg(tb.user_id), pg_catalog.array_agg(tb.pool),
         pg_catalog.array_agg(tb.criteria), pg_catalog.array_agg(tb.enqueued_at)
  into v_count, a_id, a_user, a_pool, a_crit, a_enq, b_id, b_user, b_pool, b_crit, b_enq
  from unnest(p_a, p_b) as p(a, b)
  join gone as ta on ta.id = p.a
  join gone as tb on tb.id = p.b;
  if v_count <> v_pairs then
    -- Cannot happen while every writer holds the pool lock; refuse rather than half-pair.
    raise exception 'matchmaker: internal error: % of % tickets paired', 2 * v_count, 2 * v_pairs
      using errcode = '40001';
  end if;
  return matchmaker._record_pairs(p_now, p_widen,
    a_id, a_user, a_pool, a_crit, a_enq, b_id, b_user, b_pool, b_crit, b_enq);
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Batch pairing of one pool by one of several workers (caller holds the pool lock in SHARED mode;
-- only for pools without flexible keys and with the default hook). See the header.
-- ---------------------------------------------------------------------------------------------
create function matchmaker._pair_pool_shared(p_pool text, p_budget integer, s matchmaker.settings) returns integer
language plpgsql volatile
set search_path = ''
set jit = off
set plan_cache_mode = force_generic_plan
as $fn$
declare
  v_now timestamptz := pg_catalog.clock_timestamp();
  v_key integer := pg_catalog.hashtext(p_pool);
  v_hint bigint;
  v_tids tid[];
  v_ids uuid[];
  v_n integer := 0;
  v_count integer;
  v_more integer;
  a_id uuid[]; a_user uuid[]; a_pool text[]; a_crit jsonb[]; a_enq timestamptz[];
  b_id uuid[]; b_user uuid[]; b_pool text[]; b_crit jsonb[]; b_enq timestamptz[];
begin
  if p_budget <= 0 then
    return 0;
  end if;
  v_hint := coalesce((select h.head_seq from matchmaker.pool_heads as h
                      where h.pool = p_pool order by h.id desc limit 1), 0);
  -- Claim: one worker of this pool at a time, for the length of two (rarely three) statements.
  perform pg_catalog.pg_advisory_lock(1835887479, v_key);
  begin
    -- The next unclaimed live tickets in seq order, paired 1 with 2, 3 with 4, ... (an odd last one
    -- stays unclaimed). A live ticket's id, user, pool, criteria and enqueue time never change (a
    -- heartbeat writes last_seen_at only), so what is read here is what gets recorded.
    select coalesce(pg_catalog.array_agg(o.ctid), '{}') || coalesce(pg_catalog.array_agg(o.nctid), '{}'),
           coalesce(pg_catalog.array_agg(o.id), '{}') || coalesce(pg_catalog.array_agg(o.nid), '{}'),
           pg_catalog.array_agg(o.id), pg_catalog.array_agg(o.user_id), pg_catalog.array_agg(o.pool),
           pg_catalog.array_agg(o.criteria), pg_catalog.array_agg(o.enqueued_at),
           pg_catalog.array_agg(o.nid), pg_catalog.array_agg(o.nuser), pg_catalog.array_agg(o.npool),
           pg_catalog.array_agg(o.ncrit), pg_catalog.array_agg(o.nenq)
    into v_tids, v_ids, a_id, a_user, a_pool, a_crit, a_enq, b_id, b_user, b_pool, b_crit, b_enq
    from (
      select k.ctid, k.id, k.user_id, k.pool, k.criteria, k.enqueued_at,
             pg_catalog.lead(k.ctid) over w as nctid, pg_catalog.lead(k.id) over w as nid,
             pg_catalog.lead(k.user_id) over w as nuser, pg_catalog.lead(k.pool) over w as npool,
             pg_catalog.lead(k.criteria) over w as ncrit, pg_catalog.lead(k.enqueued_at) over w as nenq,
             pg_catalog.row_number() over w as r
      from (select t.ctid, t.id, t.user_id, t.pool, t.criteria, t.enqueued_at, t.seq
            from matchmaker.tickets as t
            where t.pool = p_pool and t.seq >= v_hint and t.expires_at > v_now
              and (s.heartbeat_timeout is null or t.last_seen_at > v_now - s.heartbeat_timeout)
            order by t.seq
            limit 2 * p_budget
            for key share skip locked) as k
      window w as (order by k.seq)
    ) as o
    where o.r % 2 = 1 and o.nid is not null;
    v_n := coalesce(pg_catalog.cardinality(a_id), 0);
    if v_n > 0 then
      -- By tuple id (no index probe), checking the ticket id too (a line pointer freed by pruning
      -- could hold another row). A ticket whose heartbeat is in flight is waited for and its new
      -- version deleted; one whose heartbeat committed before this statement's snapshot is not
      -- found at its old tuple id and is deleted by id below.
      delete from matchmaker.tickets as t
      using unnest(v_tids, v_ids) as c(tid, id)
      where t.ctid = c.tid and t.id = c.id;
      get diagnostics v_count = row_count;
      if v_count < 2 * v_n then
        delete from matchmaker.tickets as t where t.id = any (v_ids);
        get diagnostics v_more = row_count;
        v_count := v_count + v_more;
      end if;
      if v_count <> 2 * v_n then
        -- A ticket was deleted without its pool lock; refuse rather than half-pair.
        raise exception 'matchmaker: internal error: % of % claimed tickets deleted', v_count, 2 * v_n
          using errcode = '40001';
      end if;
    end if;
  exception
    when query_canceled then
      perform pg_catalog.pg_advisory_unlock(1835887479, v_key);
      raise;
    when others then
      perform pg_catalog.pg_advisory_unlock(1835887479, v_key);
      raise;
  end;
  perform pg_catalog.pg_advisory_unlock(1835887479, v_key);
  if v_n = 0 then
    return 0;
  end if;
  perform matchmaker._record_pairs(pg_catalog.clock_timestamp(), s.widen,
    a_id, a_user, a_pool, a_crit, a_enq, b_id, b_user, b_pool, b_crit, b_enq);
  perform matchmaker._settle_pool(p_pool, v_hint);
  return v_n;
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- One bounded maintenance step: as in 20261128000100, except that the pools it pairs with shared
-- workers (see header) are locked in SHARED mode, in the same global key order as every other pool
-- lock, and the housekeeping deletes skip rows another step is deleting.
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
    select coalesce(pg_catalog.array_agg(x.pool order by x.pool), '{}') into v_pair_pools
    from (select p.pool from matchmaker.pools as p where p.pool > coalesce(p_cursor, '')
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

-- ---------------------------------------------------------------------------------------------
-- pg_cron with several workers: jobs matchmaker-maintenance, matchmaker-maintenance-2, ... with the
-- same schedule and command as schedule_maintenance(every). workers = 1 is schedule_maintenance(every).
-- ---------------------------------------------------------------------------------------------
create function matchmaker.schedule_maintenance(every interval, workers integer) returns text
language plpgsql volatile
set search_path = ''
as $fn$
declare
  v_first text;
  v_job record;
  i integer;
begin
  if workers is null or workers < 1 or workers > 16 then
    raise exception 'matchmaker: invalid argument: workers must be between 1 and 16' using errcode = '22023';
  end if;
  v_first := matchmaker.schedule_maintenance(every);
  if workers = 1 then
    return v_first;
  end if;
  execute 'select schedule, command from cron.job where jobname = $1' into v_job using 'matchmaker-maintenance';
  for i in 2 .. workers loop
    execute 'select cron.schedule($1, $2, $3)'
      using 'matchmaker-maintenance-' || i::text, v_job.schedule, v_job.command;
  end loop;
  return v_first || pg_catalog.format(' (x%s workers: jobs matchmaker-maintenance, matchmaker-maintenance-2 .. -%s)',
    workers, workers);
end
$fn$;

create or replace function matchmaker.unschedule_maintenance() returns boolean
language plpgsql volatile
set search_path = ''
as $fn$
declare
  v_job bigint;
  v_any boolean := false;
begin
  if matchmaker._pg_cron_version() is null then
    return false;
  end if;
  for v_job in execute
    'select jobid from cron.job where jobname = $1 or jobname ~ $2 order by jobid'
    using 'matchmaker-maintenance', '^matchmaker-maintenance-[0-9]+$'
  loop
    execute 'select cron.unschedule($1)' using v_job;
    v_any := true;
  end loop;
  return v_any;
end
$fn$;

-- Privileges: the new functions are internal (owner / pg_cron only); replaced ones keep their grants.
revoke all on function matchmaker._hook_is_default() from public, anon, authenticated, service_role;
revoke all on function matchmaker._record_pairs(timestamptz, jsonb, uuid[], uuid[], text[], jsonb[], timestamptz[],
  uuid[], uuid[], text[], jsonb[], timestamptz[]) from public, anon, authenticated, service_role;
revoke all on function matchmaker._pair_pool_shared(text, integer, matchmaker.settings) from public, anon, authenticated, service_role;
revoke all on function matchmaker.schedule_maintenance(interval, integer) from public, anon, authenticated, service_role;
