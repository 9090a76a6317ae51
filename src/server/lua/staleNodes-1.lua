--[[
  Nodes whose last heartbeat (Redis time) is older than the timeout.

  Input:
    KEYS[1] live nodes zset        <prefix>{reg}:nodes

    ARGV[1] node timeout in ms

  Output:
    array of node ids
]]
--- @include "time"

return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', nowMs() - tonumber(ARGV[1]))
