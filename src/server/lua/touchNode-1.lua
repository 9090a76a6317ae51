--[[
  A node's heartbeat: record it as alive at Redis time (so nodes with skewed clocks agree on who is dead).

  Input:
    KEYS[1] live nodes zset        <prefix>{reg}:nodes

    ARGV[1] node id

  Output:
    1 when the node was not registered (first heartbeat, or it had been declared dead), 0 otherwise
]]
--- @include "time"

local added = redis.call('ZADD', KEYS[1], nowMs(), ARGV[1])
return added
