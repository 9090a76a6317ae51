-- =============================================================================================
-- supabase-matchmaker: queue tier, faster join (schema version 20261128000400)
-- =============================================================================================
--
-- WHY
--   The join serialises every decision of a pool on the pool's advisory lock, held to the commit
--   (that is what guarantees no stranded pairs: each join sees every earlier join's commit). So one
--   pool's throughput is 1 / (time the lock is held), and that time was mostly not the decision:
--   every SQL helper of 20261128000100 (`language sql` with `set search_path`) cannot be inlined and
--   is parsed and planned again in every transaction (PL/pgSQL plans, by contrast, are kept per
--   session), about 1.6 ms of CPU per join, ~1.4 ms of it under the lock. With JIT on (the default),
--   the batch statement of 1,000 pairs was also JIT-compiled on every chunk (its row estimates are
--   far too high), about a third of the batch's time.
--
-- WHAT CHANGES (same rule, same locks in the same order, same rows, notifications and JSON)
--   * matchmaker._join: a fast path for the common case (no open ticket, a new ticket id) written as
--     plain statements in one PL/pgSQL function: no SQL-helper calls on the way unless criteria
--     differ, nothing but index probes between the pool lock and the decision, and a join that finds
--     a partner never inserts its own ticket (it goes straight to history: one insert and one delete
--     fewer, no dead tuple). Idempotent retries, double taps, criteria changes and revivals go to
--     matchmaker._join_general, which is the 20261128000100 `_join` renamed.
--   * matchmaker._apply_pairs (batch): `set jit = off`; notifications written by one insert.
--   * matchmaker._broadcast: the rows realtime.send() would insert, for several users at once, in one
--     statement and at most one subtransaction (realtime.send opens one per message: 2,000 per chunk
--     of 1,000 pairs, past the 64 subtransactions a backend can track without spilling to
--     pg_subtrans). A failing insert is retried message by message through realtime.send(), so, as
--     before, a notification never aborts a match.
--   * public.matchmaker_join: PL/pgSQL instead of SQL, so its call is planned once per session.
--   test/queue-sql/QueueSql.fasterJoin.test.ts runs a scenario through every branch of the join on
--   20261128000100 alone and on this migration and requires identical answers, rows and messages.
--
-- MEASURED (bench/queue.bench.ts, 2-core VM, A B A B medians; see bench/README.md "Queue tier")
--   Server CPU per join (track_functions, one quiet connection): ~1.6 ms before, ~0.3 ms after.
--   Joins/s, 8 connections, PostgREST-style transactions (two runs; C_tpcb 1,533 and 2,948 tps):
--     one pool          490 -> 1,002 and 542 -> 618   (the pool lock is held to the commit: see below)
--     1,000 pools       741 -> 1,477 and 1,129 -> 2,432   (0.96x and 0.83x C_tpcb)
--   Batch (run_maintenance, 20K backlog): 6,860 -> 18,006 and 6,226 -> 17,913 matches/s;
--   100K backlog drained in 3.9 and 3.7 s (50 committed chunks, longest 163 ms).
--   Claim p99 with a 60 s old snapshot: 1.04x and 0.71x the clean figure.
--
-- WHAT WAS TRIED AND NOT SHIPPED
--   synchronous_commit = off for joins that only enqueue (the lock would no longer be held through
--   the WAL flush of half the joins). Sound for the invariants (WAL is replayed in order: any later
--   match or cancel that involves the ticket flushes it first, and a crash leaves a consistent prefix)
--   but not durable: a crash can forget tickets whose users were told "waiting" (their clients then
--   read "idle" at the next reconcile). Measured A B A B as an opt-in setting: one pool 594 -> 354
--   joins/s (no gain: half the joins still match and flush under the lock, and the WAL writer's
--   background flush of the enqueues competes with them), 1,000 pools 1,593 -> 1,779 (+12%, where
--   group commit already amortises the flush). Not worth losing an acknowledged write. Even with
--   synchronous_commit off for EVERY join (unsafe: a crash could forget a match its users were told
--   about) one pool only reaches 1,144 and 1,050 joins/s.
--   What bounds one pool: each decision must see the previous decision's commit (otherwise two
--   concurrent joins could both wait: a stranded pair), and a synchronous commit becomes visible
--   only after its WAL flush, one PostgREST COMMIT round trip after the function returned. Holding a
--   lock, a row lock or nothing at all does not change that; skipping rows locked by an in-flight
--   claim (SKIP LOCKED) does, but strands a pair whenever that claim aborts. So a pool makes at most
--   one durable decision per (commit round trip + flush); spread load over pools (exact criteria
--   keys) to scale, and use the batch processor for backlogs.
-- =============================================================================================

do $prereq$
begin
  if pg_catalog.to_regprocedure('matchmaker._join(uuid, jsonb, uuid)') is null
     or pg_catalog.to_regclass('matchmaker.schema_migrations') is null then
    raise exception 'matchmaker: the faster-join migration needs the queue tier'
      using errcode = '55000',
            hint = 'Apply 20261128000100_matchmaker_queue.sql first.';
  end if;
end
$prereq$;

insert into matchmaker.schema_migrations (version, name)
values ('20261128000400', 'matchmaker_queue_faster_join')
on conflict (version) do nothing;

-- ---------------------------------------------------------------------------------------------
-- Broadcast from the Database, several messages at once: the rows realtime.send() would insert
-- (private, extension 'broadcast', topic 'matchmaker:user:<uid>'), in ONE insert and at most one
-- subtransaction, where realtime.send() opens one subtransaction per message. Like realtime.send(), it
-- never aborts the caller: if the insert fails (an RLS insert policy that checks realtime.topic(), a
-- missing partition, ...), each message is retried through realtime.send(), which only warns.
-- ---------------------------------------------------------------------------------------------
create function matchmaker._broadcast(p_users uuid[], p_event text, p_payloads jsonb[]) returns integer
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
    insert into realtime.messages (payload, event, topic, private, extension)
    select m.payload, p_event, 'matchmaker:user:' || m.user_id::text, true, 'broadcast'
    from unnest(p_users, p_payloads) as m(user_id, payload);
  exception when others then
    for i in 1 .. v_n loop
      perform realtime.send(p_payloads[i], p_event, 'matchmaker:user:' || p_users[i]::text, true);
    end loop;
  end;
  return v_n;
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- The general join: the 20261128000100 `_join`, renamed (its body is not repeated here). The fast
-- join below delegates to it whenever the user already has an open ticket or the ticket id is
-- already known (double taps, retries, criteria changes, revivals): that logic stays in one place.
-- ---------------------------------------------------------------------------------------------
alter function matchmaker._join(uuid, jsonb, uuid) rename to _join_general;

-- ---------------------------------------------------------------------------------------------
-- Join, fast path: a user with no open ticket and a new ticket id (every first join). Same rule,
-- same locks in the same order, same rows, same notifications, same JSON as the general join;
-- only cheaper (see header).
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
  v_mine jsonb;
  v_id uuid;
  v_topic text;
  v_hb integer;
  v_now timestamptz;
  v_hint bigint;
  v_after bigint;
  v_batch integer;
  r matchmaker.tickets;
  p matchmaker.tickets;
  v_t matchmaker.tickets;
  v_expired uuid[] := '{}';
  v_stale uuid[] := '{}';
  v_retired integer := 0;
  v_match uuid;
  v_meet jsonb;
  v_head bigint;
begin
  if p_user is null then
    perform matchmaker._require_user(p_user);
  end if;
  select * into s from matchmaker.settings as x where x.singleton;
  if s.singleton is null then
    s := matchmaker._settings();   -- raises: the settings row is missing
  end if;
  if s.criteria_keys = '[]'::jsonb
     and (p_criteria is null or p_criteria = '{}'::jsonb or pg_catalog.jsonb_typeof(p_criteria) = 'null') then
    v_pool := '{}';
    v_criteria := '{}'::jsonb;
  else
    select n.pool, n.criteria into v_pool, v_criteria
    from matchmaker._normalize_criteria(p_criteria, s.criteria_keys) as n;
  end if;

  -- User lock (lock order: user -> pool), then the cases the general join handles. Checked under the
  -- user lock only: no other transaction can open a ticket for this user or finish one it does not have.
  perform pg_catalog.pg_advisory_xact_lock(1835887476, pg_catalog.hashtext(p_user::text));
  if exists (select 1 from matchmaker.tickets as t where t.user_id = p_user)
     or (p_ticket_id is not null
         and (exists (select 1 from matchmaker.ticket_history as hh where hh.ticket_id = p_ticket_id)
              or exists (select 1 from matchmaker.tickets as t where t.id = p_ticket_id))) then
    return matchmaker._join_general(p_user, p_criteria, p_ticket_id);
  end if;
  v_id := coalesce(p_ticket_id, gen_random_uuid());
  v_topic := 'matchmaker:user:' || p_user::text;
  v_hb := case when s.heartbeat_timeout is null then null
    else greatest(1000, (extract(epoch from s.heartbeat_timeout) * 1000 / 3)::integer) end;

  -- Critical section: from here to the commit this transaction holds the pool lock.
  perform pg_catalog.pg_advisory_xact_lock(1835887475, pg_catalog.hashtext(v_pool));
  v_now := pg_catalog.clock_timestamp();
  v_hint := coalesce((select h.head_seq from matchmaker.pool_heads as h
                      where h.pool = v_pool order by h.id desc limit 1), 0);

  -- Claim: the oldest waiting ticket of the pool that is live, compatible and eligible (as _claim).
  v_after := v_hint - 1;
  <<batches>>
  loop
    v_batch := 0;
    for r in
      select * from matchmaker.tickets as t
      where t.pool = v_pool and t.seq > v_after
      order by t.seq
      limit 32
    loop
      v_batch := v_batch + 1;
      v_after := r.seq;
      continue when r.user_id = p_user;
      if r.expires_at <= v_now then
        if pg_catalog.cardinality(v_expired) < s.claim_retire_limit then
          v_expired := v_expired || r.id;
        end if;
        continue;
      end if;
      if s.heartbeat_timeout is not null and r.last_seen_at <= v_now - s.heartbeat_timeout then
        if pg_catalog.cardinality(v_stale) < s.claim_retire_limit then
          v_stale := v_stale || r.id;
        end if;
        continue;
      end if;
      -- Equal criteria are always compatible (each key: equal, or '*' after widening on either side).
      if r.criteria <> v_criteria then
        v_mine := coalesce(v_mine, matchmaker._effective(v_criteria, v_now, v_now, s.widen));
        continue when not matchmaker._compatible(
          matchmaker._effective(r.criteria, r.enqueued_at, v_now, s.widen), v_mine);
      end if;
      continue when not coalesce(matchmaker.is_eligible(r.user_id, p_user), false);
      p := r;
      exit batches;
    end loop;
    exit batches when v_batch < 32;
  end loop batches;
  if pg_catalog.cardinality(v_expired) > 0 then
    v_retired := v_retired + matchmaker._retire(v_expired, 'expired', 'ttl', v_now, s.heartbeat_timeout);
  end if;
  if pg_catalog.cardinality(v_stale) > 0 then
    v_retired := v_retired + matchmaker._retire(v_stale, 'disconnected', 'heartbeat_timeout', v_now, s.heartbeat_timeout);
  end if;

  if p.id is null then
    -- Nobody to pair with: wait.
    insert into matchmaker.tickets (id, user_id, pool, criteria, enqueued_at, expires_at, last_seen_at, widens_at)
    values (v_id, p_user, v_pool, v_criteria, v_now, v_now + s.ticket_ttl, v_now,
            case when s.widen = '{}'::jsonb then null
                 else matchmaker._next_widen(v_criteria, v_now, v_now, s.widen) end)
    returning * into v_t;
    if v_retired > 0 then
      perform matchmaker._settle_pool(v_pool, v_hint);
    end if;
    return pg_catalog.jsonb_build_object(
      'status', 'waiting', 'result', 'created',
      'ticket', pg_catalog.jsonb_build_object('id', v_t.id, 'criteria', v_t.criteria, 'pool', v_t.pool,
        'enqueued_at', v_t.enqueued_at, 'expires_at', v_t.expires_at, 'last_seen_at', v_t.last_seen_at,
        'widens_at', v_t.widens_at),
      'match', null, 'reason', null, 'topic', v_topic, 'heartbeat_interval_ms', v_hb,
      'server_time', pg_catalog.clock_timestamp());
  end if;

  -- Pair p (older: ticket_a) with the joiner, whose ticket goes straight to history.
  delete from matchmaker.tickets as t where t.id = p.id;
  if not found then
    -- Cannot happen while every writer holds the pool lock; refuse rather than half-pair.
    raise exception 'matchmaker: internal error: claimed ticket vanished' using errcode = '40001';
  end if;
  v_match := gen_random_uuid();
  v_meet := case when p.criteria = v_criteria and s.widen = '{}'::jsonb then v_criteria
    else matchmaker._meet(matchmaker._effective(p.criteria, p.enqueued_at, v_now, s.widen),
                          coalesce(v_mine, matchmaker._effective(v_criteria, v_now, v_now, s.widen))) end;
  insert into matchmaker.matches (id, user_a, user_b, ticket_a, ticket_b, pool, criteria, created_at)
  values (v_match, p.user_id, p_user, p.id, v_id, v_pool, v_meet, v_now);
  insert into matchmaker.ticket_history
    (ticket_id, user_id, outcome, reason, match_id, partner_id, match_criteria, pool, criteria, enqueued_at, ended_at)
  values (p.id, p.user_id, 'matched', null, v_match, p_user, v_meet, p.pool, p.criteria, p.enqueued_at, v_now),
         (v_id, p_user, 'matched', null, v_match, p.user_id, v_meet, v_pool, v_criteria, v_now, v_now);
  perform matchmaker._broadcast(array[p.user_id, p_user], 'matched', array[
    pg_catalog.jsonb_build_object('type', 'matched', 'ticket_id', p.id, 'user_id', p.user_id,
      'match', pg_catalog.jsonb_build_object('id', v_match, 'partner_id', p_user, 'created_at', v_now,
        'criteria', v_meet)),
    pg_catalog.jsonb_build_object('type', 'matched', 'ticket_id', v_id, 'user_id', p_user,
      'match', pg_catalog.jsonb_build_object('id', v_match, 'partner_id', p.user_id, 'created_at', v_now,
        'criteria', v_meet))]);
  -- Advance the pool's head log (as _settle_pool).
  select t.seq into v_head from matchmaker.tickets as t
  where t.pool = v_pool and t.seq >= v_hint order by t.seq limit 1;
  if v_head is null then
    v_head := pg_catalog.nextval('matchmaker.ticket_seq');
  end if;
  if v_head > v_hint then
    insert into matchmaker.pool_heads (pool, head_seq) values (v_pool, v_head);
  end if;
  return pg_catalog.jsonb_build_object(
    'status', 'matched', 'result', 'created',
    'ticket', pg_catalog.jsonb_build_object('id', v_id, 'criteria', v_criteria, 'pool', v_pool,
      'enqueued_at', v_now, 'ended_at', v_now),
    'match', pg_catalog.jsonb_build_object('id', v_match, 'partner_id', p.user_id, 'created_at', v_now,
      'criteria', v_meet),
    'reason', null, 'topic', v_topic, 'heartbeat_interval_ms', v_hb,
    'server_time', pg_catalog.clock_timestamp());
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Batch pairing: same statement, without JIT (see header), notifications in one insert.
-- ---------------------------------------------------------------------------------------------
create or replace function matchmaker._apply_pairs(p_a uuid[], p_b uuid[], p_now timestamptz, p_widen jsonb)
returns integer
language plpgsql volatile
set search_path = ''
set jit = off
as $fn$
declare
  v_pairs integer := pg_catalog.cardinality(p_a);
  v_count integer;
  v_users uuid[];
  v_payloads jsonb[];
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
      case when ta.criteria = tb.criteria and p_widen = '{}'::jsonb then ta.criteria
           else matchmaker._meet(matchmaker._effective(ta.criteria, ta.enqueued_at, p_now, p_widen),
                                 matchmaker._effective(tb.criteria, tb.enqueued_at, p_now, p_widen)) end,
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
  select coalesce(pg_catalog.array_agg(h.user_id), '{}'),
         coalesce(pg_catalog.array_agg(pg_catalog.jsonb_build_object(
           'type', 'matched', 'ticket_id', h.ticket_id, 'user_id', h.user_id,
           'match', pg_catalog.jsonb_build_object('id', h.match_id, 'partner_id', h.partner_id,
             'created_at', p_now, 'criteria', h.match_criteria))), '{}')
  into v_users, v_payloads
  from hist as h;
  v_count := pg_catalog.cardinality(v_users);
  if v_count <> 2 * v_pairs then
    -- Cannot happen while every writer holds the pool lock; refuse rather than half-pair.
    raise exception 'matchmaker: internal error: % of % tickets paired', v_count, 2 * v_pairs
      using errcode = '40001';
  end if;
  perform matchmaker._broadcast(v_users, 'matched', v_payloads);
  return v_pairs;
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- The public wrapper in PL/pgSQL: its call is planned once per session, not once per transaction.
-- ---------------------------------------------------------------------------------------------
create or replace function public.matchmaker_join(criteria jsonb default '{}'::jsonb, ticket_id uuid default null)
returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $fn$
begin
  return matchmaker._join(auth.uid(), criteria, ticket_id);
end
$fn$;

-- Privileges: the new functions are internal; the replaced ones keep their grants.
revoke all on function matchmaker._join(uuid, jsonb, uuid) from public, anon, authenticated, service_role;
revoke all on function matchmaker._broadcast(uuid[], text, jsonb[]) from public, anon, authenticated, service_role;
