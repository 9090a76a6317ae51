--[[
  Forget the user's open ticket, but only if the record still points at the given ticket (compare and
  delete), so a release that arrives late never drops the user's newer ticket.

  Input:
    KEYS[1] user record hash       <prefix>{u<hash>}:user:<userId>

    ARGV[1] ticket id

  Output:
    1 when the record was deleted, 0 when it pointed elsewhere (or was gone)
]]

if redis.call('HGET', KEYS[1], 'ticket') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
