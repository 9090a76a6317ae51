--[[
  A node's heartbeat: record it as alive at Redis time (so nodes with skewed clocks agree on who is dead) and
  keep its ticket index alive with it.

  Input:
    KEYS[1] live nodes zset        <prefix>{reg}:nodes
    KEYS[2] the node's ticket set  <prefix>{reg}:node:<nodeId>

    ARGV[1] node id
    ARGV[2] lifetime of the ticket index in ms

  Output:
    1 when the node was not registered (first heartbeat, or it had been declared dead), 0 otherwise
]]
--- @include "time"

local added = redis.call('ZADD', KEYS[1], nowMs(), ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return added
