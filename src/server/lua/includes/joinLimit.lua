--[[
  The user's join limit shared by every node: a token bucket in the user's slot, at Redis time. Pulled into a
  script with `--- @include "joinLimit"` (claimUser, joinTicket).
]]

-- Take one token from the bucket at `key` (fields tokens, at). `rate` tokens per second (0: no limit), `burst`
-- at most. False when the bucket is empty (nothing changed).
local function takeJoinToken(key, now, rate, burst)
  if rate <= 0 then
    return true
  end
  local b = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = burst
  if b[1] then
    tokens = math.min(burst, tonumber(b[1]) + math.max(0, now - tonumber(b[2])) * rate / 1000)
  end
  if tokens < 1 then
    return false
  end
  redis.call('HSET', key, 'tokens', tostring(tokens - 1), 'at', string.format('%d', now))
  -- Gone once it would be full again anyway.
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
  return true
end
