-- =============================================================================================
-- supabase-matchmaker: queue tier, a join in fewer statements (schema version 20261128000800)
-- =============================================================================================
--
-- WHY
--   A join's server time is mostly not its rows but the machinery around each SQL statement it runs
--   (perf on the 1,000-pools benchmark: executor start-up and shutdown of ~15 statements per join,
--   re-planning, one subtransaction opened by a nested function, set-returning function scans), and
--   two things were paid on EVERY call that looked free:
--     * custom plans: PL/pgSQL caches plans per session, but a statement with parameters is planned
--       again on each execution while the plan cache still prefers custom plans (7.6% of all CPU in
--       the profile was the planner inside the join);
--     * the default eligibility hook is a `language sql` function with a SET clause: Postgres cannot
--       inline it, so it is parsed and planned again in every transaction that pairs.
--
-- WHAT CHANGES (same rule, same locks in the same order, same rows, notifications and JSON)
--   * matchmaker._join (the fast path of 20261128000400; the general join is untouched):
--       - plan_cache_mode = force_generic_plan: every statement is planned once per session (the
--         plans are the index scans enable_seqscan/enable_bitmapscan = off already force);
--       - the "criteria already normal" test of matchmaker._normalize_criteria (20261128000500) is
--         one jsonpath expression in matchmaker._criteria_is_normal, which both the join (as a simple
--         expression, where it ran `select ... from _normalize_criteria(...)`) and
--         _normalize_criteria call; any other criteria still go through _normalize_criteria;
--       - the pool head hint and the pool's first waiting ticket come from one statement; when that
--         ticket is live, has the same criteria and the hook accepts the pair (the common case), it
--         is claimed at once; otherwise the keyset loop of 20261128000400 runs exactly as before;
--       - pairing is ONE statement (delete the claimed ticket, insert the match, both history rows
--         and both notifications) inside one subtransaction, where before four statements and a
--         call of matchmaker._broadcast opened that subtransaction. If it fails (a project policy or
--         a missing partition refusing the realtime.messages insert), the pairing is redone without
--         the notifications, which are then sent through realtime.send(), which only warns: as
--         before, a notification never aborts a match;
--       - the pool's head log after a claim at the head: a claimed ticket whose seq is a multiple of
--         4 logs the head (one pool_heads row per ~4 claims instead of one per claim). The hint
--         stays a lower bound of the pool's open tickets (nothing below it is ever inserted: pool
--         lock order), so a claim walks at most the few dead index entries of the claims since the
--         last logged head, also while an old snapshot keeps them from being vacuumed.
--   * matchmaker.is_eligible: the shipped default (`select true`) becomes the same function in
--     PL/pgSQL (compiled once per session). Only if the host has not replaced it: a host hook is
--     never overwritten.
--
-- MEASURED: see bench/README.md "Queue tier" (session 4).
--
-- WHAT WAS TRIED AND NOT DONE
--   * The claim and the waiting insert in the pairing statement too (one data-modifying statement
--     for every join, four statements in all): 8% fewer joins/s (A B, 5 rounds, pgbench over 1,000
--     pools). A statement that may write four tables opens all their indexes whenever it runs, also
--     on the half of the joins that only wait.
--   * No pool-registry trigger and no expires_at index on tickets (an upper bound of what bypassing
--     the trigger for the join's own insert could give): +1.5%, within the noise of the runs.
-- =============================================================================================

do $prereq$
begin
  if pg_catalog.to_regprocedure('matchmaker._join_general(uuid, jsonb, uuid)') is null
     or pg_catalog.to_regprocedure('matchmaker._normalize_criteria_general(jsonb, jsonb)') is null
     or pg_catalog.to_regprocedure('matchmaker._register_pool()') is null then
    raise exception 'matchmaker: the fewer-statements migration needs the lighter-writes migration'
      using errcode = '55000',
            hint = 'Apply 20261128000100, 20261128000400, 20261128000500 and 20261128000600 first.';
  end if;
end
$prereq$;

insert into matchmaker.schema_migrations (version, name)
values ('20261128000800', 'matchmaker_queue_fewer_statements')
on conflict (version) do nothing;

-- ---------------------------------------------------------------------------------------------
-- "Already normal" criteria: the one definition of 20261128000500's fast test, now one jsonpath
-- expression (no jsonb_each / jsonb_array_elements scans). Every declared key is exact without a
-- default, and the criteria are an object of declared keys with string values that are not '*' or
-- 'any' and at most 64 characters; the general normalisation returns such criteria unchanged, with
-- their text as the pool. PL/pgSQL: compiled once per session and called as a simple expression.
-- ---------------------------------------------------------------------------------------------
create function matchmaker._criteria_is_normal(p_criteria jsonb, p_keys jsonb) returns boolean
language plpgsql immutable
set search_path = ''
as $fn$
begin
  return pg_catalog.jsonb_typeof(p_criteria) = 'object'
    and not pg_catalog.jsonb_path_exists(p_keys,
      '$[*] ? (exists(@."default") || (exists(@."match") && @."match" != "exact"))')
    and not pg_catalog.jsonb_path_exists(p_criteria,
      'strict $.keyvalue() ? (@.value.type() != "string" || @.value == "*" || @.value == "any" || @.value like_regex "^.{65}" flag "s" || !(@.key == $keys[*]))',
      pg_catalog.jsonb_build_object('keys', pg_catalog.jsonb_path_query_array(p_keys, '$[*].key')));
end
$fn$;

-- The criteria fast path of 20261128000500 through that test; same answers.
create or replace function matchmaker._normalize_criteria(p_criteria jsonb, p_keys jsonb, out pool text, out criteria jsonb)
language plpgsql stable
set search_path = ''
as $fn$
begin
  if matchmaker._criteria_is_normal(p_criteria, p_keys) then
    pool := p_criteria::text;
    criteria := p_criteria;
    return;
  end if;
  select n.pool, n.criteria into pool, criteria
  from matchmaker._normalize_criteria_general(p_criteria, p_keys) as n;
end
$fn$;

-- ---------------------------------------------------------------------------------------------
-- The default eligibility hook, in PL/pgSQL, unless the host replaced it.
-- ---------------------------------------------------------------------------------------------
do $hook$
declare
  v_fn pg_catalog.pg_proc;
begin
  select * into v_fn from pg_catalog.pg_proc as p
  where p.oid = pg_catalog.to_regprocedure('matchmaker.is_eligible(uuid, uuid)');
  if v_fn.oid is not null
     and v_fn.prolang = (select l.oid from pg_catalog.pg_language as l where l.lanname = 'sql')
     and pg_catalog.btrim(v_fn.prosrc, E' \t\r\n') = 'select true' then
    execute $ddl$
      create or replace function matchmaker.is_eligible(a uuid, b uuid) returns boolean
      language plpgsql stable
      set search_path = ''
      as $fn$
      begin
        return true;
      end
      $fn$
    $ddl$;
  end if;
end
$hook$;

-- ---------------------------------------------------------------------------------------------
-- Join, fast path (replaces 20261128000400's): see header.
-- ---------------------------------------------------------------------------------------------
create or replace function matchmaker._join(p_user uuid, p_criteria jsonb, p_ticket_id uuid) returns jsonb
language plpgsql volatile
set search_path = ''
set enable_seqscan = off
set enable_bitmapscan = off
set plan_cache_mode = force_generic_plan
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
  v_at_head boolean := false;
  v_gone integer;
  v_pay_p jsonb;
  v_pay_me jsonb;
  v_msg_p uuid;
  v_msg_me uuid;
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
  elsif matchmaker._criteria_is_normal(p_criteria, s.criteria_keys) then
    v_pool := p_criteria::text;
    v_criteria := p_criteria;
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
  -- The head hint and the first ticket at or after it, in one statement (taken after the lock).
  select hx.hint, c.* into v_hint, r.id, r.user_id, r.pool, r.criteria, r.seq, r.enqueued_at, r.expires_at,
         r.last_seen_at, r.widens_at
  from (select coalesce((select h.head_seq from matchmaker.pool_heads as h
                         where h.pool = v_pool order by h.id desc limit 1), 0) as hint) as hx
  left join lateral (
    select t.id, t.user_id, t.pool, t.criteria, t.seq, t.enqueued_at, t.expires_at, t.last_seen_at, t.widens_at
    from matchmaker.tickets as t
    where t.pool = v_pool and t.seq >= hx.hint
    order by t.seq
    limit 1) as c on true;

  if r.id is not null
     and r.user_id <> p_user
     and r.expires_at > v_now
     and not (s.heartbeat_timeout is not null and r.last_seen_at <= v_now - s.heartbeat_timeout)
     and r.criteria = v_criteria
     and coalesce(matchmaker.is_eligible(r.user_id, p_user), false) then
    -- The common case: the pool's first ticket is live, equal and accepted.
    p := r;
    v_at_head := true;
  elsif r.id is not null then
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
  v_match := gen_random_uuid();
  v_meet := case when p.criteria = v_criteria and s.widen = '{}'::jsonb then v_criteria
    else matchmaker._meet(matchmaker._effective(p.criteria, p.enqueued_at, v_now, s.widen),
                          coalesce(v_mine, matchmaker._effective(v_criteria, v_now, v_now, s.widen))) end;
  -- The notification payloads with the message row id as "id" (as realtime.send() writes them).
  v_msg_p := gen_random_uuid();
  v_msg_me := gen_random_uuid();
  v_pay_p := pg_catalog.jsonb_build_object('type', 'matched', 'ticket_id', p.id, 'user_id', p.user_id,
    'match', pg_catalog.jsonb_build_object('id', v_match, 'partner_id', p_user, 'created_at', v_now,
      'criteria', v_meet), 'id', v_msg_p);
  v_pay_me := pg_catalog.jsonb_build_object('type', 'matched', 'ticket_id', v_id, 'user_id', p_user,
    'match', pg_catalog.jsonb_build_object('id', v_match, 'partner_id', p.user_id, 'created_at', v_now,
      'criteria', v_meet), 'id', v_msg_me);
  begin
    -- Everything in one statement: the claimed ticket leaves, the match and both history rows are
    -- written only if it did, and both notifications are the rows realtime.send() would insert
    -- (private, extension 'broadcast', the row id also in the payload as "id").
    with gone as (
      delete from matchmaker.tickets as t where t.id = p.id returning t.id
    ), made as (
      insert into matchmaker.matches (id, user_a, user_b, ticket_a, ticket_b, pool, criteria, created_at)
      select v_match, p.user_id, p_user, p.id, v_id, v_pool, v_meet, v_now from gone
      returning id
    ), hist as (
      insert into matchmaker.ticket_history
        (ticket_id, user_id, outcome, reason, match_id, partner_id, match_criteria, pool, criteria, enqueued_at, ended_at)
      select h.ticket_id, h.user_id, 'matched', null, v_match, h.partner_id, v_meet, h.pool, h.criteria, h.enqueued_at, v_now
      from made
      cross join (values (p.id, p.user_id, p_user, p.pool, p.criteria, p.enqueued_at),
                         (v_id, p_user, p.user_id, v_pool, v_criteria, v_now))
        as h(ticket_id, user_id, partner_id, pool, criteria, enqueued_at)
    ), sent as (
      insert into realtime.messages (id, payload, event, topic, private, extension)
      select m.id, m.payload, 'matched', m.topic, true, 'broadcast'
      from made
      cross join (values (v_msg_p, v_pay_p, 'matchmaker:user:' || p.user_id::text),
                         (v_msg_me, v_pay_me, v_topic))
        as m(id, payload, topic)
    )
    select pg_catalog.count(*)::integer into v_gone from gone;
  exception when others then
    -- The notifications' insert was refused (or anything else failed): pair without it, then send
    -- each notification through realtime.send(), which only warns. A failure that is not the
    -- notifications' fails again here and aborts the join, as it would have before.
    delete from matchmaker.tickets as t where t.id = p.id;
    get diagnostics v_gone = row_count;
    if v_gone = 1 then
      insert into matchmaker.matches (id, user_a, user_b, ticket_a, ticket_b, pool, criteria, created_at)
      values (v_match, p.user_id, p_user, p.id, v_id, v_pool, v_meet, v_now);
      insert into matchmaker.ticket_history
        (ticket_id, user_id, outcome, reason, match_id, partner_id, match_criteria, pool, criteria, enqueued_at, ended_at)
      values (p.id, p.user_id, 'matched', null, v_match, p_user, v_meet, p.pool, p.criteria, p.enqueued_at, v_now),
             (v_id, p_user, 'matched', null, v_match, p.user_id, v_meet, v_pool, v_criteria, v_now, v_now);
      perform realtime.send(v_pay_p - 'id', 'matched', 'matchmaker:user:' || p.user_id::text, true);
      perform realtime.send(v_pay_me - 'id', 'matched', v_topic, true);
    end if;
  end;
  if v_gone <> 1 then
    -- Cannot happen while every writer holds the pool lock; refuse rather than half-pair.
    raise exception 'matchmaker: internal error: claimed ticket vanished' using errcode = '40001';
  end if;
  -- Advance the pool's head log: after a claim past the head always, after a claim at the head once
  -- every ~4 claims (see header).
  if not v_at_head or p.seq % 4 = 0 then
    perform matchmaker._settle_pool(v_pool, v_hint);
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

-- Privileges: replaced functions keep their (revoked) grants; restated for the record.
revoke all on function matchmaker._join(uuid, jsonb, uuid) from public, anon, authenticated, service_role;
revoke all on function matchmaker._criteria_is_normal(jsonb, jsonb) from public, anon, authenticated, service_role;
