--[[
  Withdraw a ticket. Atomic against pairing: either the ticket was still waiting and is now ended (no match
  will ever be made for it), or pairing won and the match is returned. The nodes watching the ticket are
  told (a cancel in one tab ends the search in the others); the caller's own search id is sent along so its
  node can skip the connection that asked. A ticket that does not exist yet (its creation is still in
  flight) gets a tombstone, so the late creation finds it ended.

  Input:
    KEYS[1] ticket hash            <base>t:<ticketId>
    KEYS[2] ticket watcher set     <base>tw:<ticketId>
    KEYS[3] bucket pools set       <base>pools
    KEYS[4] bucket expiry zset     <base>exp
    KEYS[5] bucket widening zset   <base>wid
    KEYS[6] bucket orphans zset    <base>orph

    ARGV[1] base (bucket key prefix with hash tag)
    ARGV[2] ticket id
    ARGV[3] user id (must own the ticket)
    ARGV[4] search id of the caller (recorded, so a retried cancel of the same search answers the same)
    ARGV[5] reason: 'user' | 'superseded'
    ARGV[6] retention of ended tickets in ms
    ARGV[7] pub/sub channel prefix

  Output:
    -2 (NotOwner) when the ticket belongs to another user
    otherwise { outcome, detail }
      { 'cancelled', '' }          the ticket is withdrawn (now, or earlier by this same search)
      { 'matched', matchJson }     pairing won
      { 'not_searching', reason }  the ticket had already ended (expired, disconnected, another tab, ...)
]]
--- @include "tickets"

local ctx = newContext(ARGV[1], ARGV[7], ARGV[6], 0, 3)

local tk = KEYS[1]
if redis.call('EXISTS', tk) == 0 then
  redis.call('HSET', tk, 'user', ARGV[3], 'state', 'ended', 'reason', ARGV[5], 'by', ARGV[4], 'endedAt', ctx.now)
  redis.call('PEXPIRE', tk, ctx.retention)
  return { 'cancelled', '' }
end

local f = redis.call('HMGET', tk, 'user', 'state', 'match', 'reason', 'by')
if f[1] ~= ARGV[3] then
  return -2
end
if f[2] == 'waiting' then
  endTicket(ctx, ARGV[2], ARGV[5], ARGV[4])
  return { 'cancelled', '' }
end
if f[2] == 'matched' then
  return { 'matched', f[3] }
end
if f[5] == ARGV[4] then
  return { 'cancelled', '' }
end
return { 'not_searching', f[4] or '' }
