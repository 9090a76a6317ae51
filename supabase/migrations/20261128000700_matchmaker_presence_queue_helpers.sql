-- =============================================================================================
-- supabase-matchmaker: presence tiers call the queue tier's helpers (schema version 20261128000700)
-- =============================================================================================
--
-- WHY
--   20261128000200_matchmaker_presence.sql carried its own copies of queue-tier helpers. Where a copy
--   does exactly what the queue's helper does, the presence function now calls the queue's helper,
--   so the private-topic name and the way a user is notified are defined once for both tiers.
--   Same answers, same rows, same notifications, same grants as before.
--
-- WHAT CHANGES (bodies only; names, signatures, volatility, owners and grants stay)
--   * matchmaker._presence_topic(uuid)              -> matchmaker._topic(uuid)                 (000100)
--   * matchmaker._presence_notify(uuid, text, jsonb) -> matchmaker._notify(uuid, text, jsonb)   (000100)
--   Every presence function that names a topic or sends a notification goes through these two
--   (_presence_envelope, _presence_close, _presence_claim), so none of their bodies is repeated here.
--
-- COST (measured, 2-core VM, server-side PL/pgSQL loop of 20,000 calls, 000500 vs this migration
--   interleaved, 5 rounds, under the bench lock): _presence_state 18.1-18.2 -> 22.6-22.9 us per call
--   (every presence RPC builds one envelope, so about +4.6 us each: the extra call of _topic, an SQL
--   function with a SET clause, which Postgres cannot inline); _presence_notify 16.8-18.3 -> 19.0-20.3 us.
--   Keeping search_path = '' on every function (the tiers' convention) rules out inlining the wrappers.
--
-- WHAT STAYS A PRESENCE FUNCTION, AND WHY (not copies: different rules or data)
--   * matchmaker._presence_criteria vs the queue's matchmaker._normalize_criteria(criteria, keys):
--     the queue accepts only keys declared in matchmaker.settings.criteria_keys, turns every value
--     into text, accepts null and '*'/'any' (flexible keys), and allows 64 characters; presence
--     accepts any key matching ^[A-Za-z][A-Za-z0-9_]{0,62}$ (at most 16), keeps numbers and
--     booleans as they are (they are part of the pool), refuses null, and allows 200 characters.
--     Calling the queue's function would change which criteria are accepted and the pools.
--   * matchmaker._presence_settings() vs matchmaker._settings(): different tables
--     (matchmaker.presence_settings: search_ttl, history_retention; matchmaker.settings: the queue's).
--   * matchmaker._presence_lock_user vs matchmaker._lock_user: different lock namespaces
--     (1835887477 vs 1835887476); sharing one would make a user's presence begin wait for their
--     queue join and the other way round.
--   * The state JSON (_presence_envelope) has the presence shape ("search", "user_id", "ttl_ms",
--     heartbeat = ttl / 4); the queue's _envelope/_history_state build the queue's ("ticket",
--     heartbeat = heartbeat_timeout / 3) from queue rows (matchmaker.ticket_history).
--
-- DEPENDS ON (queue tier, present since 20261128000100 and not redefined by 000400 or 000500)
--   matchmaker._topic(uuid), matchmaker._notify(uuid, text, jsonb); as before also
--   matchmaker._require_user(uuid), matchmaker.is_eligible(uuid, uuid), matchmaker.matches.
--   A later migration that changes _topic or _notify changes the presence tiers' topic and
--   notifications with them (which is the point); test/presence/PresenceSql.queueHelpers.test.ts
--   checks the presence answers and notifications against 20261128000200's functions.
-- =============================================================================================

do $prereq$
declare
  v_missing text[] := '{}';
begin
  if pg_catalog.to_regprocedure('matchmaker._presence_notify(uuid, text, jsonb)') is null then
    v_missing := v_missing || 'function matchmaker._presence_notify(uuid, text, jsonb) (20261128000200)'::text;
  end if;
  if pg_catalog.to_regprocedure('matchmaker._topic(uuid)') is null then
    v_missing := v_missing || 'function matchmaker._topic(uuid) (20261128000100)'::text;
  end if;
  if pg_catalog.to_regprocedure('matchmaker._notify(uuid, text, jsonb)') is null then
    v_missing := v_missing || 'function matchmaker._notify(uuid, text, jsonb) (20261128000100)'::text;
  end if;
  if pg_catalog.cardinality(v_missing) > 0 then
    raise exception 'matchmaker: the presence queue-helpers migration needs %', pg_catalog.array_to_string(v_missing, ', ')
      using errcode = '55000',
            hint = 'Apply 20261128000100_matchmaker_queue.sql and 20261128000200_matchmaker_presence.sql first.';
  end if;
end
$prereq$;

insert into matchmaker.schema_migrations (version, name)
values ('20261128000700', 'matchmaker_presence_queue_helpers')
on conflict (version) do nothing;

-- The private topic of a user: the queue tier's (both tiers notify on the same topic).
create or replace function matchmaker._presence_topic(p_user uuid) returns text
language sql immutable parallel safe
set search_path = ''
as $fn$
  select matchmaker._topic(p_user)
$fn$;

-- Notify a user on their private topic: the queue tier's realtime.send call.
create or replace function matchmaker._presence_notify(p_user uuid, p_event text, p_payload jsonb) returns void
language plpgsql volatile
set search_path = ''
as $fn$
begin
  perform matchmaker._notify(p_user, p_event, p_payload);
end
$fn$;
