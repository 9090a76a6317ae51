-- =============================================================================================
-- supabase-matchmaker: queue tier, a join with fewer statements around its work, and JSON built
-- from row types (schema version 20261128001000)
-- =============================================================================================
--
-- WHY
--   Instruction counts of one backend (valgrind callgrind on `postgres --single`: the same 2,000
--   PostgREST-shaped join transactions over 1,000 pools on every variant, so a figure repeats to the
--   instruction; bench/README.md "Joins, session 5") showed a join still running statements that do
--   no matchmaking work:
--     * `PERFORM pg_advisory_xact_lock(...)` runs a SELECT statement (executor start-up and shutdown,
--       ~10,000 instructions) where an expression does the same;
--     * the settings row and the probes that send a join to the general path (an open ticket for the
--       user, a ticket id already used) were two statements;
--     * the joiner's match object was built twice (its notification and its answer).
--   And a quarter of what a batch pair costs was jsonb_build_object: for every argument, keys
--   included, on every call, it looks the argument's type up again (base type, element type, row
--   type, output function: four catalog-cache probes for a text or uuid) before converting it. A
--   pair's two notification payloads take 18 keys and 18 values that way.
--
-- WHAT CHANGES (same rule, same locks in the same order, same rows, notifications and answers)
--   matchmaker._join (the fast path; the general join is untouched):
--     * takes the user lock first, then reads the settings and the probes in ONE statement; the
--       criteria are normalised after the lock (normalising reads no table and takes no lock; the
--       general join, which a busy user goes to, normalises them itself, with the same errors);
--     * takes both advisory locks in assignments (simple expressions, no executor);
--     * builds the joiner's match object once;
--     * past the head of the pool (its first ticket expired, stale, of other criteria or refused by
--       the hook), calls matchmaker._claim of 20261128000100 instead of carrying a copy of its loop;
--     * builds its two payloads, its match object and both of its answers from the row types below.
--   JSON from row types (every JSON value is equal to before):
--     * Five row types describe the JSON objects the hot paths build; to_jsonb() of a row of one of
--       them takes its keys from the type's column names and probes only the values' types:
--         matchmaker.match_json            a match as one user sees it (id, partner_id, created_at,
--                                          criteria): the "match" of a notification and of an answer;
--         matchmaker.matched_message_json  a 'matched' notification payload (type, ticket_id, user_id,
--                                          match, id: the realtime.messages row id);
--         matchmaker.open_ticket_json      the "ticket" of a waiting join's answer;
--         matchmaker.ended_ticket_json     the "ticket" of a matched join's answer;
--         matchmaker.join_answer_json      a join's answer (status, result, ticket, match, reason,
--                                          topic, heartbeat_interval_ms, server_time).
--       A column that is null gives a JSON null, as the "match": null and "reason": null keys of the
--       answers were before; jsonb orders keys itself, so the column order does not show.
--     * matchmaker._record_pairs (every pairing path but the join's own: the batch workers, the
--       general join, heartbeats) builds its payloads with them.
--
-- MEASURED (`npm run bench:instructions`: instructions per transaction under callgrind, 2,000
--   transactions after 1,000 warm-up ones, joins over 1,000 pools; bench/README.md "Joins, session 5"
--   and "Joins and batch pairs, session 6")
--                                        before      fewer statements    and row-type JSON
--     join                               1,149,729   1,117,181 (-2.8%)   1,093,180 (-4.9% in all)
--     batch pair (one worker)              411,277                          389,156 (-5.4%)
--     pgbench TPC-B transaction, for scale   730,198
--   What a join does beyond the RPC itself (~850,000) is more than a whole TPC-B transaction. What is
--   left of building JSON is the values' own lookups and conversions (to_jsonb is ~8% of a join): a
--   row type saves the keys' share, not the values'.
--
-- WHAT WAS MEASURED AND NOT DONE (callgrind, the same kind of script, on scratch variants of this migration)
--   * No SET clause on the helpers a join calls (the criteria test, the default eligibility hook,
--     the pool-registry trigger) and the join's settings on the public wrapper only: a further
--     -1.6%. Every function of the tier keeps `search_path = ''` (an invariant the security tests
--     check) instead.
--   * No subtransaction around the pairing statement: -0.5%. It keeps a refused notification from
--     aborting a match; kept.
--   * The pool-registry trigger skipped for the join's own insert (a WHEN clause on a setting the
--     join sets, the registry probed in the join's head statement): +2.4%, slower.
--   * Payloads concatenated as text and cast to jsonb instead of jsonb_build_object: -14% per
--     payload, about -2% per join, -3.1% per batch pair; hand-written JSON, where the row types save
--     more and say what the JSON is.
--   Upper bounds, to show where a join's instructions go (not shippable as they stand): without the
--   two history rows -7.5%, without the two notification rows -4.6%, without the CHECK constraints
--   of ticket_history and matches -2.7% (every INSERT statement deserialises and plans each CHECK
--   again), without the registry trigger and the expires_at index -3.3%.
--
-- EXISTING DATA: nothing is rewritten.
-- =============================================================================================

do $prereq$
begin
  if pg_catalog.to_regprocedure('matchmaker._criteria_is_normal(jsonb, jsonb)') is null
     or pg_catalog.to_regprocedure('matchmaker._hook_is_default()') is null then
    raise exception 'matchmaker: the join-statements migration needs the parallel-batch migration'
      using errcode = '55000',
            hint = 'Apply every migration up to 20261128000900 first.';
  end if;
end
$prereq$;

insert into matchmaker.schema_migrations (version, name)
values ('20261128001000', 'matchmaker_queue_join_statements')
on conflict (version) do nothing;

-- ---------------------------------------------------------------------------------------------
-- The JSON objects of the hot paths, as row types: column names are the JSON keys (see header).
-- Internal: only the tier's SECURITY DEFINER functions use them.
-- ---------------------------------------------------------------------------------------------
create type matchmaker.match_json as (id uuid, partner_id uuid, created_at timestamptz, criteria jsonb);
create type matchmaker.matched_message_json as (type text, ticket_id uuid, user_id uuid, match jsonb, id uuid);
create type matchmaker.open_ticket_json as (id uuid, criteria jsonb, pool text, enqueued_at timestamptz,
  expires_at timestamptz, last_seen_at timestamptz, widens_at timestamptz);
create type matchmaker.ended_ticket_json as (id uuid, criteria jsonb, pool text, enqueued_at timestamptz,
  ended_at timestamptz);
create type matchmaker.join_answer_json as (status text, result text, ticket jsonb, match jsonb, reason text,
  topic text, heartbeat_interval_ms integer, server_time timestamptz);
revoke all on type matchmaker.match_json, matchmaker.matched_message_json, matchmaker.open_ticket_json,
  matchmaker.ended_ticket_json, matchmaker.join_answer_json from public;

-- ---------------------------------------------------------------------------------------------
-- Writes the pairs: 20261128000900's, with the payloads built from matchmaker.matched_message_json.
-- ---------------------------------------------------------------------------------------------
create or replace function matchmaker._record_pairs(p_now timestamptz, p_widen jsonb,
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
           pg_catalog.to_jsonb(row('matched', e.tid, e.uid,
             pg_catalog.to_jsonb(row(e.mid, e.partner, p_now, e.mc)::matchmaker.match_json),
             e.nid)::matchmaker.matched_message_json),
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
           pg_catalog.array_agg(pg_catalog.to_jsonb(row('matched', h.ticket_id, h.user_id,
             pg_catalog.to_jsonb(row(h.match_id, h.partner_id, p_now, h.match_criteria)::matchmaker.match_json),
             null)::matchmaker.matched_message_json) - 'id')
    into v_users, v_payloads
    from h;
    for i in 1 .. coalesce(pg_catalog.cardinality(v_users), 0) loop
      perform realtime.send(v_payloads[i], 'matched', 'matchmaker:user:' || v_users[i]::text, true);
    end loop;
  end;
  return v_pairs;
end
$fn$;

-- Privileges: a replaced function keeps its (revoked) grants; restated for the record.
revoke all on function matchmaker._record_pairs(timestamptz, jsonb, uuid[], uuid[], text[], jsonb[], timestamptz[],
  uuid[], uuid[], text[], jsonb[], timestamptz[]) from public, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Join, fast path (replaces 20261128000800's): see header.
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
  v_id uuid;
  v_topic text;
  v_hb integer;
  v_now timestamptz;
  v_hint bigint;
  r matchmaker.tickets;
  p matchmaker.tickets;
  v_t matchmaker.tickets;
  v_me matchmaker.tickets;
  v_claim record;
  v_retired integer := 0;
  v_match uuid;
  v_meet jsonb;
  v_at_head boolean := false;
  v_gone integer;
  v_pay_p jsonb;
  v_pay_me jsonb;
  v_msg_p uuid;
  v_msg_me uuid;
  v_locked boolean;
  v_busy boolean;
  v_match_me jsonb;
begin
  if p_user is null then
    perform matchmaker._require_user(p_user);
  end if;
  -- User lock (lock order: user -> pool), then the settings and the cases the general join handles,
  -- in one statement. Checked under the user lock only: no other transaction can open a ticket for
  -- this user or finish one it does not have. A lock taken in an assignment is a simple expression
  -- (no executor start), where PERFORM runs a SELECT statement.
  v_locked := pg_catalog.pg_advisory_xact_lock(1835887476, pg_catalog.hashtext(p_user::text)) is null;
  -- Only the settings this function and matchmaker._claim read are filled in s (PL/pgSQL cannot put
  -- a whole row and another column into one INTO list).
  select x.singleton, x.ticket_ttl, x.heartbeat_timeout, x.criteria_keys, x.widen, x.claim_retire_limit,
         exists (select 1 from matchmaker.tickets as t where t.user_id = p_user)
         or (p_ticket_id is not null
             and (exists (select 1 from matchmaker.ticket_history as hh where hh.ticket_id = p_ticket_id)
                  or exists (select 1 from matchmaker.tickets as t where t.id = p_ticket_id)))
    into s.singleton, s.ticket_ttl, s.heartbeat_timeout, s.criteria_keys, s.widen, s.claim_retire_limit, v_busy
  from matchmaker.settings as x where x.singleton;
  if s.singleton is null then
    s := matchmaker._settings();   -- raises: the settings row is missing
  end if;
  if v_busy then
    return matchmaker._join_general(p_user, p_criteria, p_ticket_id);
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
  v_id := coalesce(p_ticket_id, gen_random_uuid());
  v_topic := 'matchmaker:user:' || p_user::text;
  v_hb := case when s.heartbeat_timeout is null then null
    else greatest(1000, (extract(epoch from s.heartbeat_timeout) * 1000 / 3)::integer) end;

  -- Critical section: from here to the commit this transaction holds the pool lock.
  v_locked := pg_catalog.pg_advisory_xact_lock(1835887475, pg_catalog.hashtext(v_pool)) is null;
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
    -- Past the head: matchmaker._claim (20261128000100) takes the oldest waiting ticket of the pool
    -- that is live, compatible and eligible, and retires the expired and stale ones it passes.
    v_me.id := v_id;
    v_me.user_id := p_user;
    v_me.pool := v_pool;
    v_me.criteria := v_criteria;
    v_me.enqueued_at := v_now;
    select * into v_claim from matchmaker._claim(v_me, v_hint, v_now, s);
    p := v_claim.partner;
    v_retired := v_claim.retired;
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
    return pg_catalog.to_jsonb(row('waiting', 'created',
      pg_catalog.to_jsonb(row(v_t.id, v_t.criteria, v_t.pool, v_t.enqueued_at, v_t.expires_at, v_t.last_seen_at,
        v_t.widens_at)::matchmaker.open_ticket_json),
      null, null, v_topic, v_hb, pg_catalog.clock_timestamp())::matchmaker.join_answer_json);
  end if;

  -- Pair p (older: ticket_a) with the joiner, whose ticket goes straight to history.
  v_match := gen_random_uuid();
  v_meet := case when p.criteria = v_criteria and s.widen = '{}'::jsonb then v_criteria
    else matchmaker._meet(matchmaker._effective(p.criteria, p.enqueued_at, v_now, s.widen),
                          matchmaker._effective(v_criteria, v_now, v_now, s.widen)) end;
  -- The notification payloads with the message row id as "id" (as realtime.send() writes them).
  v_msg_p := gen_random_uuid();
  v_msg_me := gen_random_uuid();
  v_pay_p := pg_catalog.to_jsonb(row('matched', p.id, p.user_id,
    pg_catalog.to_jsonb(row(v_match, p_user, v_now, v_meet)::matchmaker.match_json),
    v_msg_p)::matchmaker.matched_message_json);
  v_match_me := pg_catalog.to_jsonb(row(v_match, p.user_id, v_now, v_meet)::matchmaker.match_json);
  v_pay_me := pg_catalog.to_jsonb(row('matched', v_id, p_user, v_match_me, v_msg_me)::matchmaker.matched_message_json);
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
  return pg_catalog.to_jsonb(row('matched', 'created',
    pg_catalog.to_jsonb(row(v_id, v_criteria, v_pool, v_now, v_now)::matchmaker.ended_ticket_json),
    v_match_me, null, v_topic, v_hb, pg_catalog.clock_timestamp())::matchmaker.join_answer_json);
end
$fn$;

-- Privileges: a replaced function keeps its (revoked) grants; restated for the record.
revoke all on function matchmaker._join(uuid, jsonb, uuid) from public, anon, authenticated, service_role;
