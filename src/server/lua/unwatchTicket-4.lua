--[[
  A node no longer has any connection watching a ticket (the connections closed, or the node died and
  another node cleans up after it). When nobody watches a waiting ticket any more, it keeps its place for
  a grace window: the user may reconnect to any node and resume it; otherwise the sweep ends it with
  reason 'disconnected'.

  Input:
    KEYS[1] ticket hash            <base>t:<ticketId>
    KEYS[2] ticket watcher set     <base>tw:<ticketId>
    KEYS[3] bucket orphans zset    <base>orph
    KEYS[4] the node's index of waiting tickets in this bucket   <base>n:<ARGV[2]>

    ARGV[1] ticket id
    ARGV[2] node id
    ARGV[3] grace window in ms

  Output:
    the number of nodes still watching the ticket
]]
--- @include "time"

redis.call('SREM', KEYS[2], ARGV[2])
redis.call('SREM', KEYS[4], ARGV[1])
local left = redis.call('SCARD', KEYS[2])
if left == 0 and redis.call('HGET', KEYS[1], 'state') == 'waiting' then
  redis.call('ZADD', KEYS[3], nowMs() + tonumber(ARGV[3]), ARGV[1])
end
return left
