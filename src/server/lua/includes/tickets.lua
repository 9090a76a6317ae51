--[[
  Shared ticket helpers, pulled into a script with `--- @include "tickets"`.

  Every helper takes `ctx`, built by the including script:
    ctx.base       key prefix of the bucket, hash tag included ('<prefix>{p<n>}:')
    ctx.chPrefix   pub/sub channel prefix; a node listens on ctx.chPrefix .. nodeId
    ctx.now        Redis time in ms (nowMs())
    ctx.retention  ms an ended ticket is kept so late readers (resume, cancel) learn its outcome
    ctx.widenMs    ms between widening steps, 0 for never
    ctx.pools, ctx.exp, ctx.wid, ctx.orph   the bucket's shared keys (from KEYS)
    ctx.stream     the bucket's match stream, or nil when matches are not recorded (persistence off)
    ctx.self       id of the calling node, or nil: it learns the matches from the reply (ctx.made) and delivers
                   them itself, so they are not published to it
    ctx.made       array; every match made is appended (its JSON)
    ctx.ended      array; every ticket ended is appended ({ticketId, userId, reason})
    ctx.releaseUsers  true only in scripts that run on a standalone Redis (joinTicket): a ticket that stops
                   waiting also releases its user's record (compare and delete), whose key the ticket names in
                   field `urec` (so it is not a declared key: it lives in the user's slot, not the bucket's)

  Key layout inside a bucket (all share the bucket's hash slot):
    <base>t:<ticketId>   HASH  user, state (waiting|matched|ended), c0, pool, crit, level, chain,
                               match (JSON, when matched), reason, by (searchId that cancelled), endedAt,
                               urec (key of the user's record; only written on a standalone Redis)
    <base>tw:<ticketId>  SET   ids of the nodes that have a connection watching the ticket
    <base>q:<pool>       ZSET  waiting tickets of one pool, score = enqueue time (FIFO)
    <base>pools          SET   pools that may hold waiting tickets
    <base>exp            ZSET  waiting tickets by expiry time
    <base>wid            ZSET  waiting tickets by next widening time
    <base>orph           ZSET  waiting tickets nobody watches, by disconnect deadline
    <base>m              STREAM matches to persist (field `match`, the match JSON)
    <base>n:<nodeId>     SET   waiting tickets the node watches (its index in this bucket: when the node dies,
                               another node finds its tickets here); kept by the scripts that add and remove
                               watchers, so it costs no round trip of its own
]]

--- @include "time"

-- The ctx above, as every including script starts it: the bucket's settings from ARGV (as strings), its four
-- shared keys from KEYS[k] .. KEYS[k + 3] (pools, exp, wid, orph: in that order in every script), the time
-- (`now` when the script already read it, else Redis time now), and nothing made or ended yet. The script adds
-- stream, self and releaseUsers where it has them.
local function newContext(base, chPrefix, retention, widenMs, k, now)
  return {
    base = base,
    chPrefix = chPrefix,
    retention = tonumber(retention),
    widenMs = tonumber(widenMs),
    pools = KEYS[k],
    exp = KEYS[k + 1],
    wid = KEYS[k + 2],
    orph = KEYS[k + 3],
    now = now or nowMs(),
    made = {},
    ended = {},
  }
end

local function ticketKey(ctx, id)
  return ctx.base .. 't:' .. id
end

local function watchersKey(ctx, id)
  return ctx.base .. 'tw:' .. id
end

local function poolKey(ctx, pool)
  return ctx.base .. 'q:' .. pool
end

local function nodeIndexKey(ctx, node)
  return ctx.base .. 'n:' .. node
end

-- The ticket no longer waits: drop it from the index of every node watching it.
local function unindex(ctx, id, nodes)
  for _, node in ipairs(nodes) do
    redis.call('SREM', nodeIndexKey(ctx, node), id)
  end
end

local function publishTo(ctx, nodes, message)
  for _, node in ipairs(nodes) do
    redis.call('PUBLISH', ctx.chPrefix .. node, message)
  end
end

-- Remove a ticket from its pool and from every schedule of the bucket.
local function leavePool(ctx, id, pool)
  if pool then
    local q = poolKey(ctx, pool)
    redis.call('ZREM', q, id)
    if redis.call('ZCARD', q) == 0 then
      redis.call('SREM', ctx.pools, pool)
    end
  end
  redis.call('ZREM', ctx.exp, id)
  redis.call('ZREM', ctx.wid, id)
  redis.call('ZREM', ctx.orph, id)
end

-- Keep an ended ticket (and its watcher set) for ctx.retention ms only.
local function retain(ctx, id)
  redis.call('PEXPIRE', ticketKey(ctx, id), ctx.retention)
  redis.call('PEXPIRE', watchersKey(ctx, id), ctx.retention)
end

-- Standalone Redis only (ctx.releaseUsers): forget the user's record if it still names this ticket, so the
-- user's next join finds no stale record. `urec` is the record's key as the ticket names it (or false).
local function releaseRecord(ctx, id, urec)
  if ctx.releaseUsers and urec and redis.call('HGET', urec, 'ticket') == id then
    redis.call('DEL', urec)
  end
end

-- End a waiting ticket without a match and tell the nodes watching it.
local function endTicket(ctx, id, reason, by)
  local tk = ticketKey(ctx, id)
  local fields = redis.call('HMGET', tk, 'user', 'pool', 'urec')
  leavePool(ctx, id, fields[2])
  releaseRecord(ctx, id, fields[3])
  redis.call('HSET', tk, 'state', 'ended', 'reason', reason, 'by', by or '', 'endedAt', ctx.now)
  retain(ctx, id)
  local nodes = redis.call('SMEMBERS', watchersKey(ctx, id))
  unindex(ctx, id, nodes)
  publishTo(ctx, nodes, cjson.encode({ t = 'e', ticket = id, reason = reason, by = by or '' }))
  table.insert(ctx.ended, { id, fields[1] or '', reason })
end

-- A name-based UUID (version 5 layout) from the two tickets and the exact Redis time: unique per match
-- because each ticket is matched at most once, and the same on every node that reads it.
local function matchUuid(a, b)
  local t = redis.call('TIME')
  local h = redis.sha1hex(a .. '|' .. b .. '|' .. t[1] .. '.' .. t[2])
  local variant = string.format('%x', (tonumber(string.sub(h, 17, 17), 16) % 4) + 8)
  return string.sub(h, 1, 8) .. '-' .. string.sub(h, 9, 12) .. '-5' .. string.sub(h, 14, 16) .. '-' ..
    variant .. string.sub(h, 18, 20) .. '-' .. string.sub(h, 21, 32)
end

-- Pair two waiting tickets of one pool: mark both matched, record the match for persistence and tell
-- every node watching either ticket. `a` is the older ticket; its user comes first in userIds. `fa`, `fb` are
-- their fields as stillWaiting read them.
local function makeMatch(ctx, a, b, pool, fa, fb)
  local id = matchUuid(a, b)
  local match = '{"matchId":' .. cjson.encode(id) ..
    ',"userIds":[' .. cjson.encode(fa[2]) .. ',' .. cjson.encode(fb[2]) .. ']' ..
    ',"ticketIds":[' .. cjson.encode(a) .. ',' .. cjson.encode(b) .. ']' ..
    ',"enqueuedAtMs":[' .. fa[3] .. ',' .. fb[3] .. ']' ..
    ',"createdAtMs":' .. string.format('%d', ctx.now) ..
    ',"criteria":' .. fb[4] .. '}'
  -- Both leave the pool and every schedule of the bucket (one call per key for the two).
  local q = poolKey(ctx, pool)
  redis.call('ZREM', q, a, b)
  if redis.call('ZCARD', q) == 0 then
    redis.call('SREM', ctx.pools, pool)
  end
  redis.call('ZREM', ctx.exp, a, b)
  redis.call('ZREM', ctx.wid, a, b)
  redis.call('ZREM', ctx.orph, a, b)
  for _, tid in ipairs({ a, b }) do
    redis.call('HSET', ticketKey(ctx, tid), 'state', 'matched', 'match', match, 'endedAt', ctx.now)
    retain(ctx, tid)
  end
  releaseRecord(ctx, a, fa[5])
  releaseRecord(ctx, b, fb[5])
  if ctx.stream then
    redis.call('XADD', ctx.stream, '*', 'match', match)
  end
  local seen, nodes = {}, {}
  for _, tid in ipairs({ a, b }) do
    local watching = redis.call('SMEMBERS', watchersKey(ctx, tid))
    unindex(ctx, tid, watching)
    for _, node in ipairs(watching) do
      if not seen[node] and node ~= ctx.self then
        seen[node] = true
        table.insert(nodes, node)
      end
    end
  end
  if #nodes > 0 then
    publishTo(ctx, nodes, '{"t":"m","match":' .. match .. '}')
  end
  table.insert(ctx.made, match)
end

-- The ticket's fields { state, user, c0, crit, urec } when it may still be paired; nil when not (it is ended,
-- or a leftover queue entry is dropped).
local function stillWaiting(ctx, id, q)
  local f = redis.call('HMGET', ticketKey(ctx, id), 'state', 'user', 'c0', 'crit', 'urec')
  if f[1] ~= 'waiting' then
    -- A leftover queue entry (should not happen): drop it.
    redis.call('ZREM', q, id)
    return nil
  end
  local expiresAt = redis.call('ZSCORE', ctx.exp, id)
  if expiresAt and tonumber(expiresAt) <= ctx.now then
    endTicket(ctx, id, 'expired', '')
    return nil
  end
  return f
end

-- Pair the oldest waiting tickets of a pool, two by two, FIFO. At most `limit` matches.
local function tryPair(ctx, pool, limit)
  local q = poolKey(ctx, pool)
  local made = 0
  local guard = 0
  local left
  while made < limit and guard < limit * 4 + 8 do
    guard = guard + 1
    local ids = redis.call('ZRANGE', q, 0, 1)
    if #ids < 2 then
      left = #ids
      break
    end
    local a, b = ids[1], ids[2]
    local fa = stillWaiting(ctx, a, q)
    local fb = fa and stillWaiting(ctx, b, q)
    if fa and fb then
      if fa[2] == fb[2] then
        -- Two tickets of one user (only after a partial data loss): keep the older one.
        endTicket(ctx, b, 'superseded', '')
      else
        makeMatch(ctx, a, b, pool, fa, fb)
        made = made + 1
      end
    end
  end
  if left == nil then
    left = redis.call('ZCARD', q)
  end
  if left == 0 then
    redis.call('SREM', ctx.pools, pool)
  end
end

-- Move a waiting ticket one step down its widening chain (to a broader pool of the same bucket), keeping
-- its enqueue time as its place in the new pool, then try to pair it there.
local function widenTicket(ctx, id)
  local tk = ticketKey(ctx, id)
  local f = redis.call('HMGET', tk, 'state', 'pool', 'level', 'chain', 'c0')
  if f[1] ~= 'waiting' then
    redis.call('ZREM', ctx.wid, id)
    return
  end
  local chain = cjson.decode(f[4])
  local level = tonumber(f[3]) + 1
  if level >= #chain or ctx.widenMs <= 0 then
    redis.call('ZREM', ctx.wid, id)
    return
  end
  local step = chain[level + 1]
  local oldQ = poolKey(ctx, f[2])
  redis.call('ZREM', oldQ, id)
  if redis.call('ZCARD', oldQ) == 0 then
    redis.call('SREM', ctx.pools, f[2])
  end
  redis.call('ZADD', poolKey(ctx, step[1]), f[5], id)
  redis.call('SADD', ctx.pools, step[1])
  redis.call('HSET', tk, 'pool', step[1], 'crit', step[2], 'level', level)
  if level + 1 < #chain then
    redis.call('ZADD', ctx.wid, tonumber(f[5]) + (level + 1) * ctx.widenMs, id)
  else
    redis.call('ZREM', ctx.wid, id)
  end
  tryPair(ctx, step[1], 1)
end
