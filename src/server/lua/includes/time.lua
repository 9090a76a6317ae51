--[[
  Redis time, pulled into a script with `--- @include "time"`. Every script reads the clock from Redis, so
  service nodes with skewed clocks still agree on enqueue times, expiries and deadlines.
]]

local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
