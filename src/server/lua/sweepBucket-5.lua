--[[
  The periodic pass over one bucket, run by the node holding the sweeper lease: expires tickets past their
  lifetime, ends tickets nobody watched for the whole grace window ('disconnected'), widens tickets that
  waited long enough (moving them to a broader pool of the same bucket), and pairs any pool left with two
  or more waiting tickets.

  Input:
    KEYS[1] bucket pools set       <base>pools
    KEYS[2] bucket expiry zset     <base>exp
    KEYS[3] bucket widening zset   <base>wid
    KEYS[4] bucket orphans zset    <base>orph
    KEYS[5] bucket match stream    <base>m

    ARGV[1] base (bucket key prefix with hash tag)
    ARGV[2] most tickets to handle per schedule in this call
    ARGV[3] retention of ended tickets in ms
    ARGV[4] pub/sub channel prefix
    ARGV[5] widening step in ms, 0 for no widening
    ARGV[6] '1' to append matches to the stream (persistence on), '0' not to
    ARGV[7] id of the sweeping node (matches made here are not published to it: it delivers them from `made`)

  Output:
    { made, ended }
      made   array of match JSONs made by this call
      ended  array of {ticketId, userId, reason} ended by this call
]]
--- @include "tickets"

local ctx = newContext(ARGV[1], ARGV[4], ARGV[3], ARGV[5], 1)
if ARGV[6] == '1' then
  ctx.stream = KEYS[5]
end
if ARGV[7] ~= '' then
  ctx.self = ARGV[7]
end
local limit = tonumber(ARGV[2])

for _, id in ipairs(redis.call('ZRANGEBYSCORE', ctx.exp, '-inf', ctx.now, 'LIMIT', 0, limit)) do
  if redis.call('HGET', ticketKey(ctx, id), 'state') == 'waiting' then
    endTicket(ctx, id, 'expired', '')
  else
    redis.call('ZREM', ctx.exp, id)
  end
end

for _, id in ipairs(redis.call('ZRANGEBYSCORE', ctx.orph, '-inf', ctx.now, 'LIMIT', 0, limit)) do
  local waiting = redis.call('HGET', ticketKey(ctx, id), 'state') == 'waiting'
  if waiting and redis.call('SCARD', watchersKey(ctx, id)) == 0 then
    endTicket(ctx, id, 'disconnected', '')
  else
    redis.call('ZREM', ctx.orph, id)
  end
end

for _, id in ipairs(redis.call('ZRANGEBYSCORE', ctx.wid, '-inf', ctx.now, 'LIMIT', 0, limit)) do
  widenTicket(ctx, id)
end

for _, pool in ipairs(redis.call('SMEMBERS', ctx.pools)) do
  local size = redis.call('ZCARD', poolKey(ctx, pool))
  if size >= 2 then
    tryPair(ctx, pool, limit)
  elseif size == 0 then
    redis.call('SREM', ctx.pools, pool)
  end
end

return { ctx.made, ctx.ended }
