--[[
  Put a ticket in its pool (creating it when asked and absent), register the calling node as a watcher,
  and pair the pool at once. Idempotent: calling it again for an existing ticket only adds the watcher and
  reports the ticket's state, so a second tab, a resume after a reconnect and a node adopting a ticket all
  use it.

  Input:
    KEYS[1] ticket hash            <base>t:<ticketId>
    KEYS[2] ticket watcher set     <base>tw:<ticketId>
    KEYS[3] bucket pools set       <base>pools
    KEYS[4] bucket expiry zset     <base>exp
    KEYS[5] bucket widening zset   <base>wid
    KEYS[6] bucket orphans zset    <base>orph
    KEYS[7] bucket match stream    <base>m
    KEYS[8] the watching node's index of waiting tickets in this bucket   <base>n:<ARGV[6]>

    ARGV[1]  base (bucket key prefix with hash tag)
    ARGV[2]  ticket id
    ARGV[3]  user id (must own the ticket)
    ARGV[4]  enqueue time in ms (the user's claim time), used when creating
    ARGV[5]  widening chain JSON [[pool, criteriaJson], ...], level 0 first, used when creating
    ARGV[6]  watching node id, '' for none (the calling node: matches made here are not published to it,
             it delivers them from `made`)
    ARGV[7]  '1' to create the ticket when absent, '0' to answer TICKET_NOT_FOUND
    ARGV[8]  ticket ttl in ms (waiting lifetime)
    ARGV[9]  widening step in ms, 0 for no widening
    ARGV[10] retention of ended tickets in ms
    ARGV[11] pub/sub channel prefix
    ARGV[12] most matches to make in this call
    ARGV[13] '1' to append matches to the stream (persistence on), '0' not to

  Output:
    -1 (TicketNotFound) when absent and ARGV[7] is '0'
    -2 (NotOwner) when the ticket belongs to another user
    otherwise { state, detail, by, c0, chain, made, ended }
      state   'waiting' | 'matched' | 'ended'
      detail  the match JSON when matched, the reason when ended, '' when waiting
      by      the search id that cancelled it, or ''
      c0      enqueue time (ms) as a string
      chain   the widening chain JSON
      made    array of match JSONs made by this call
      ended   array of {ticketId, userId, reason} ended by this call
]]
--- @include "tickets"

local ctx = {
  base = ARGV[1],
  chPrefix = ARGV[11],
  retention = tonumber(ARGV[10]),
  widenMs = tonumber(ARGV[9]),
  pools = KEYS[3],
  exp = KEYS[4],
  wid = KEYS[5],
  orph = KEYS[6],
  made = {},
  ended = {},
}
ctx.now = nowMs()
if ARGV[13] == '1' then
  ctx.stream = KEYS[7]
end
if ARGV[6] ~= '' then
  ctx.self = ARGV[6]
end

local id = ARGV[2]
local tk = KEYS[1]
local ttl = tonumber(ARGV[8])

if redis.call('EXISTS', tk) == 0 then
  if ARGV[7] ~= '1' then
    return -1
  end
  local c0 = tonumber(ARGV[4])
  local chain = cjson.decode(ARGV[5])
  local first = chain[1]
  redis.call('HSET', tk, 'user', ARGV[3], 'c0', ARGV[4], 'pool', first[1], 'crit', first[2], 'level', 0,
    'chain', ARGV[5])
  if c0 + ttl <= ctx.now then
    -- Claimed long ago and never enqueued: it is already past its lifetime.
    redis.call('HSET', tk, 'state', 'ended', 'reason', 'expired', 'by', '', 'endedAt', ctx.now)
    redis.call('PEXPIRE', tk, ctx.retention)
  else
    redis.call('HSET', tk, 'state', 'waiting')
    redis.call('PEXPIRE', tk, c0 + ttl + ctx.retention - ctx.now)
    redis.call('ZADD', ctx.exp, c0 + ttl, id)
    if ctx.widenMs > 0 and #chain > 1 then
      redis.call('ZADD', ctx.wid, c0 + ctx.widenMs, id)
    end
    redis.call('ZADD', poolKey(ctx, first[1]), c0, id)
    redis.call('SADD', ctx.pools, first[1])
  end
elseif redis.call('HGET', tk, 'user') ~= ARGV[3] then
  return -2
end

if ARGV[6] ~= '' then
  redis.call('SADD', KEYS[2], ARGV[6])
  redis.call('ZREM', ctx.orph, id)
  redis.call('PEXPIRE', KEYS[2], math.max(redis.call('PTTL', tk), 1000))
end

local f = redis.call('HMGET', tk, 'state', 'pool')
if f[1] == 'waiting' then
  tryPair(ctx, f[2], tonumber(ARGV[12]))
end

local r = redis.call('HMGET', tk, 'state', 'match', 'reason', 'by', 'c0', 'chain')
if ARGV[6] ~= '' and r[1] == 'waiting' then
  -- In the node's index (atomically with becoming a watcher), so that if the node dies, the node that cleans
  -- up after it finds the ticket. The index outlives every waiting ticket in it (none waits longer than ttl).
  redis.call('SADD', KEYS[8], id)
  if redis.call('PTTL', KEYS[8]) < ttl then
    redis.call('PEXPIRE', KEYS[8], ttl)
  end
end
local detail = ''
if r[1] == 'matched' then
  detail = r[2]
elseif r[1] == 'ended' then
  detail = r[3]
end
return { r[1], detail, r[4] or '', r[5], r[6], ctx.made, ctx.ended }
