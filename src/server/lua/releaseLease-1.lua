--[[
  Give a lease back, only if the caller holds it.

  Input:
    KEYS[1] lease key              <prefix>{reg}:sweeper

    ARGV[1] owner (node id)

  Output:
    1 when released, 0 when the caller did not hold it
]]

if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
