--[[
  Take or renew a lease (the sweeper lease: one node sweeps at a time; another takes over when the holder
  stops renewing).

  Input:
    KEYS[1] lease key              <prefix>{reg}:sweeper

    ARGV[1] owner (node id)
    ARGV[2] lease duration in ms

  Output:
    1 when the caller holds the lease, 0 otherwise
]]

local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
