-- =============================================================================================
-- supabase-matchmaker: queue tier, idle pools leave the pool registry, and direct ticket inserts
-- take the pool lock (schema version 20261129000200)
-- =============================================================================================
--
-- WHY
--   The pool registry (matchmaker.pools) and the pool head log (matchmaker.pool_heads, which keeps
--   each pool's newest row) kept one row for every pool that ever had a ticket. With criteria that
--   take many values over time (a room, an event, a match id: one pool per value), both tables grew
--   without bound, and every maintenance step walks the registry after its cursor (two index probes
--   per registered pool since 20261129000100): a project with a million past rooms paid for a
--   million pools on every CALL matchmaker.run_maintenance() and every pg_cron run.
--
-- WHAT CHANGES
--   * settings.pool_idle (default 1 day; null: never prune). A registered pool that holds no ticket,
--     was registered more than pool_idle ago and whose head was last settled more than pool_idle ago
--     (pool_heads.settled_at, new: the time its newest head row was written; rows written before this
--     migration count from the migration) is removed from the registry with all its head rows. Its
--     next ticket registers it again (the registry trigger), so nothing about matching changes: a
--     pool that is not registered has no ticket to pair.
--   * matchmaker._prune_pools() does one bounded batch of that (at most max_pools_per_step pools, in
--     pool order after a cursor kept in matchmaker.maintenance_state) when a pass is due: at most one
--     pass per least(pool_idle, 1 hour). CALL matchmaker.run_maintenance() runs the due pass after its
--     steps, one committed batch at a time; public.matchmaker_process() runs one batch per call after
--     its step and reports "pools_pruned" (its "more" stays true while the pass has pools left).
--     CALL matchmaker.prune_pools() runs a whole pass now, due or not (for operators and tests).
--   * The registry trigger (matchmaker._register_pool, 20261128000600) takes the pool's advisory lock
--     (exclusive) before it probes the registry, and draws the ticket's seq after it: tickets.seq
--     loses its column default (nextval), and the trigger draws it when the insert gives none. A join
--     already holds that lock (taking a lock one holds is a count in the backend: no wait, no new lock); a
--     direct INSERT into matchmaker.tickets (a bulk load by the owner) now waits for the pool's joins,
--     batch workers and sweeps and holds the lock until it commits. That also closes a gap
--     20261128000100's header left to the loader ("insert tickets ... while holding the pool lock"):
--     a seq drawn without the lock could fall below a head another session logged meanwhile, and
--     claims, which start at the head, would never reach the ticket. In a repeatable read or
--     serializable transaction the trigger always writes the registry row (INSERT ... ON CONFLICT DO
--     NOTHING), since its snapshot may predate a prune.
--
-- WHY A PRUNE NEVER LOSES A POOL THAT HAS TICKETS
--   Every ticket is inserted while its pool's advisory lock (1835887475, hashtext(pool)) is held until
--   commit: by the join, or by the trigger for any other insert. A prune only TRIES the
--   lock in exclusive mode (it never waits, so it adds no deadlock), and only after it holds the lock
--   does it re-check, in a new statement and so a new snapshot (read committed, checked), that the
--   pool has no ticket and is idle. So an insert is either committed before that re-check (its ticket
--   is seen: no prune) or starts after the prune's lock (it waits for the prune to commit, and its
--   trigger's probe, a later statement, sees the registry row gone and registers the pool again; in
--   a repeatable read or serializable transaction, whose snapshot may be older, the trigger writes the
--   row without probing).
--   Deleting a pool's head rows is safe: a missing head hint reads as 0, a lower bound of any seq; it
--   only costs a walk over the pool's dead index entries, which after pool_idle vacuum has removed.
--
-- COST (`npm run bench:instructions`, callgrind, before this migration -> with it)
--   join over 1,000 pools   1,092,929 -> 1,099,822 instructions (+0.6%: the trigger's lock call on a
--                           lock the join holds, its seq expression and its isolation-level test)
--   batch pair                389,261 ->   389,230 (no change)
--   A bulk load holds one advisory lock per distinct pool it inserts into until it commits: load more
--   than a few thousand distinct pools per transaction only with max_locks_per_transaction raised, or
--   in several transactions. It takes them in row order, where maintenance takes a step's pools in key
--   order: a load into several pools while maintenance runs can deadlock with it (Postgres then aborts
--   one of the two) unless its rows come in pg_catalog.hashtext(pool) order. A prune holds at most
--   max_pools_per_step pool locks per transaction: a pass commits after each batch.
--   With 100,000 idle pools registered and one busy pool, a maintenance step took 150-192 ms (reading
--   the registry); CALL matchmaker.prune_pools() removed them in 6.5 s, after which the same step took
--   10-14 ms. A pass over 100,000 pools in use (none to prune) takes 1.0 s, at most once an hour: one
--   call of matchmaker._pool_prunable per registered pool (with the test inline in both statements
--   instead, the 100,000 were pruned in 2.2 s; one test is kept, not two copies that could drift).
--
-- EXISTING DATA: nothing is rewritten (the new columns have constant or stable defaults).
-- =============================================================================================

do $prereq$
begin
  if pg_catalog.to_regprocedure('matchmaker._register_pool()') is null
     or pg_catalog.to_regprocedure('matchmaker._maintenance_step(integer, text)') is null
     or not exists (select 1 from matchmaker.schema_migrations where version = '20261129000100') then
    raise exception 'matchmaker: the pool-pruning migration needs the busy-pools migration'
      using errcode = '55000',
            hint = 'Apply every migration up to 20261129000100 first.';
  end if;
end
$prereq$;

insert into matchmaker.schema_migrations (version, name)
values ('20261129000200', 'matchmaker_queue_pool_pruning')
on conflict (version) do nothing;

-- ---------------------------------------------------------------------------------------------
-- New columns.
-- ---------------------------------------------------------------------------------------------
alter table matchmaker.settings
  add column pool_idle interval default interval '1 day'
    check (pool_idle is null or pool_idle > interval '0');
comment on column matchmaker.settings.pool_idle is
  'A registered pool with no ticket, registered and last settled more than this long ago, leaves the pool registry (and its head rows); its next ticket registers it again. Null: never.';

alter table matchmaker.pool_heads
  add column settled_at timestamptz not null default pg_catalog.now();

alter table matchmaker.maintenance_state
  add column pools_pruned_at timestamptz not null default '-infinity',
  add column prune_cursor text;

-- ---------------------------------------------------------------------------------------------
-- The registry trigger: 20261128000600's, with the pool's lock and a seq drawn under it (see header).
-- The NOT NULL constraint on seq is checked after BEFORE triggers, so an insert that gives no seq
-- gets the trigger's.
-- ---------------------------------------------------------------------------------------------
create or replace function matchmaker._register_pool() returns trigger
language plpgsql
set search_path = ''
as $fn$
declare
  v_locked boolean;
begin
  -- The pool's lock, held to commit (an assignment, not PERFORM: a simple expression, no executor
  -- start). A join holds it already: no wait. Any other insert waits here for the pool's joins, batch
  -- workers and sweeps. Then the ticket's seq is drawn (the column has no default any more): drawn
  -- before the lock, it could be below a head that another holder logged meanwhile, and claims would
  -- never reach the ticket. A seq given explicitly (a restore) is kept.
  v_locked := pg_catalog.pg_advisory_xact_lock(1835887475, pg_catalog.hashtext(new.pool)) is null;
  new.seq := coalesce(new.seq, pg_catalog.nextval('matchmaker.ticket_seq'));
  -- The probe sees a prune committed while this insert waited for the lock only with a snapshot taken
  -- after it: in read committed (every join), not in a repeatable read or serializable transaction
  -- (a bulk load), which therefore always writes (a live registry row is a conflict: no write).
  if not exists (select 1 from matchmaker.pools as p where p.pool = new.pool)
     or pg_catalog.current_setting('transaction_isolation') <> 'read committed' then
    insert into matchmaker.pools (pool) values (new.pool) on conflict (pool) do nothing;
  end if;
  return new;
end
$fn$;

alter table matchmaker.tickets alter column seq drop default;
comment on column matchmaker.tickets.seq is
  'Enqueue order (FIFO). Drawn from matchmaker.ticket_seq by the trigger tickets_register_pool while the pool''s lock is held; give none.';

-- ---------------------------------------------------------------------------------------------
-- Can the registered pool p_pool be pruned at p_cutoff (now - pool_idle)? Registered before the
-- cutoff, its newest head row (if any) written before it, and no ticket at or after that head's seq
-- (every ticket of the pool is). The one test of a prune: for its candidates, without locks, and
-- again under each pool's lock, where the calling statement's snapshot is taken after the lock.
-- ---------------------------------------------------------------------------------------------
create function matchmaker._pool_prunable(p_pool text, p_cutoff timestamptz) returns boolean
language plpgsql stable
set search_path = ''
as $fn$
begin
  return exists (
    select 1 from matchmaker.pools as p
    left join lateral (select h.head_seq, h.settled_at from matchmaker.pool_heads as h
                       where h.pool = p.pool order by h.id desc limit 1) as newest on true
    where p.pool = p_pool
      and p.created_at < p_cutoff
      and coalesce(newest.settled_at, '-infinity') < p_cutoff
      and not exists (select 1 from matchmaker.tickets as t
                      where t.pool = p.pool and t.seq >= coalesce(newest.head_seq, 0)));
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- One batch of a prune pass (see header). p_force: start a pass from the first pool now, due or not.
-- Returns {"pools_pruned": n, "more": true while the pass has pools left}. Never waits for a lock:
-- with another pruner at work, or the pools' locks held, it does nothing now.
-- ---------------------------------------------------------------------------------------------
create function matchmaker._prune_pools(p_force boolean default false) returns jsonb
language plpgsql volatile
set search_path = ''
as $fn$
declare
  s matchmaker.settings := matchmaker._settings();
  v_now timestamptz := pg_catalog.clock_timestamp();
  v_cutoff timestamptz;
  v_cursor text;
  v_candidates text[];
  v_pool text;
  v_n integer;
  v_pruned integer := 0;
  v_more boolean;
begin
  if s.pool_idle is null then
    return pg_catalog.jsonb_build_object('pools_pruned', 0, 'more', false);
  end if;
  if pg_catalog.current_setting('transaction_isolation') <> 'read committed' then
    -- The re-check under each pool's lock must see inserts committed after this transaction began.
    raise exception 'matchmaker: pruning pools needs a read committed transaction'
      using errcode = '25001',
            hint = 'Call it outside a repeatable read or serializable transaction.';
  end if;
  -- One pruner at a time; a pass is due at most every least(pool_idle, 1 hour).
  select case when p_force then null else m.prune_cursor end into v_cursor
  from matchmaker.maintenance_state as m
  where m.singleton
    and (p_force or m.prune_cursor is not null
         or m.pools_pruned_at <= v_now - least(s.pool_idle, interval '1 hour'))
  for update skip locked;
  if not found then
    return pg_catalog.jsonb_build_object('pools_pruned', 0, 'more', false);
  end if;
  v_cutoff := v_now - s.pool_idle;

  -- Candidates, without locks; one more than a batch, to know whether the pass goes on.
  select coalesce(pg_catalog.array_agg(x.pool order by x.pool), '{}') into v_candidates
  from (select p.pool from matchmaker.pools as p
        where p.pool > coalesce(v_cursor, '') and matchmaker._pool_prunable(p.pool, v_cutoff)
        order by p.pool
        limit s.max_pools_per_step + 1) as x;
  v_more := pg_catalog.cardinality(v_candidates) > s.max_pools_per_step;
  if v_more then
    v_candidates := v_candidates[1:s.max_pools_per_step];
  end if;

  foreach v_pool in array v_candidates loop
    -- In use (a join, a batch worker, a sweep, a direct insert): not idle, leave it.
    continue when not pg_catalog.pg_try_advisory_xact_lock(1835887475, pg_catalog.hashtext(v_pool));
    -- Re-checked under the lock, in a new statement: a ticket committed meanwhile is seen here.
    delete from matchmaker.pools as p
    where p.pool = v_pool and matchmaker._pool_prunable(v_pool, v_cutoff);
    get diagnostics v_n = row_count;
    if v_n = 1 then
      delete from matchmaker.pool_heads as h where h.pool = v_pool;
      v_pruned := v_pruned + 1;
    end if;
  end loop;

  if v_more then
    update matchmaker.maintenance_state
    set prune_cursor = v_candidates[pg_catalog.cardinality(v_candidates)]
    where singleton;
  else
    update matchmaker.maintenance_state set prune_cursor = null, pools_pruned_at = v_now where singleton;
  end if;
  return pg_catalog.jsonb_build_object('pools_pruned', v_pruned, 'more', v_more);
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- A whole prune pass now, due or not, from the first pool (operators, tests): CALL
-- matchmaker.prune_pools(). Commits after each batch (so it holds at most max_pools_per_step pool
-- locks at a time), hence a procedure, with no SET clause (a procedure with one cannot COMMIT), and
-- not callable inside a transaction block. Returns the pools pruned.
-- ---------------------------------------------------------------------------------------------
create procedure matchmaker.prune_pools(inout pools_pruned integer default null)
language plpgsql
as $fn$
declare
  v_batch jsonb := matchmaker._prune_pools(true);
begin
  pools_pruned := 0;
  loop
    pools_pruned := pools_pruned + (v_batch ->> 'pools_pruned')::integer;
    commit;
    exit when not (v_batch ->> 'more')::boolean;
    v_batch := matchmaker._prune_pools(false);
  end loop;
end
$fn$;
comment on procedure matchmaker.prune_pools(integer) is
  'CALL matchmaker.prune_pools(): removes the idle pools (no ticket, registered and last settled more than settings.pool_idle ago) from the pool registry now, committing after each batch of max_pools_per_step pools. Maintenance does this on its own at most once per least(pool_idle, 1 hour).';

-- ---------------------------------------------------------------------------------------------
-- run_maintenance (20261128000100's), with the due prune pass after the steps, a committed batch
-- at a time.
-- ---------------------------------------------------------------------------------------------
create or replace procedure matchmaker.run_maintenance(run_for interval default null,
  every interval default interval '5 seconds')
language plpgsql
as $fn$
declare
  v_deadline timestamptz := pg_catalog.clock_timestamp() + coalesce(run_for, interval '0');
  v_step jsonb;
  v_cursor text;
  v_steps integer;
  v_prune jsonb;
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
    loop
      v_prune := matchmaker._prune_pools(false);
      commit;
      exit when not (v_prune ->> 'more')::boolean;
    end loop;
    exit when run_for is null or pg_catalog.clock_timestamp() + every >= v_deadline;
    perform pg_catalog.pg_sleep(extract(epoch from every)::double precision);
    commit;
  end loop;
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- matchmaker_process (20261128000100's): one step, then one batch of a due prune pass.
-- ---------------------------------------------------------------------------------------------
create or replace function public.matchmaker_process(max_pairs integer default 1000, resume_after text default null)
returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $fn$
declare
  v_role text := nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'role';
  v_step jsonb;
  v_prune jsonb;
begin
  if v_role is not null and v_role <> 'service_role' then
    raise exception 'matchmaker: service role required' using errcode = '42501';
  end if;
  v_step := matchmaker._maintenance_step(max_pairs, resume_after);
  v_prune := matchmaker._prune_pools(false);
  return v_step
    || pg_catalog.jsonb_build_object(
         'pools_pruned', v_prune -> 'pools_pruned',
         'more', (v_step ->> 'more')::boolean or (v_prune ->> 'more')::boolean);
end
$fn$;
comment on function public.matchmaker_process(integer, text) is
  'Service role / cron: one bounded step of sweeping expired and disconnected tickets and pairing waiting ones, then a bounded batch of removing idle pools from the registry when due. Call again while "more" is true, passing its "resume_after".';

-- Privileges: new functions are revoked like every function of the schema; replaced ones keep
-- their grants (restated for the record).
revoke all on function matchmaker._pool_prunable(text, timestamptz) from public, anon, authenticated, service_role;
revoke all on function matchmaker._prune_pools(boolean) from public, anon, authenticated, service_role;
revoke all on procedure matchmaker.prune_pools(integer) from public, anon, authenticated, service_role;
revoke all on function matchmaker._register_pool() from public, anon, authenticated, service_role;
revoke all on procedure matchmaker.run_maintenance(interval, interval) from public, anon, authenticated, service_role;
revoke all on function public.matchmaker_process(integer, text) from public, anon, authenticated, service_role;
grant execute on function public.matchmaker_process(integer, text) to service_role;
