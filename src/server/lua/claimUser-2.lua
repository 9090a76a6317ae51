--[[
  Reserve the user's one open ticket. The user record lives in the user's own slot and points at the
  ticket (which lives in its pool's bucket); the ticket itself is the truth about the search. A record
  pointing at a ticket that has ended is stale: the caller releases it with releaseUser-1 and claims again.
  On a Redis Cluster records are released lazily (the pairing script cannot reach the user's slot): a node that
  delivered the end of a ticket to the joining connection names it in ARGV[8], and a record naming that ticket
  is replaced at once.

  Also takes one token from the user's join limit shared by every node (a token bucket in the user's slot,
  at Redis time), so a flood of joins spread over several nodes is limited like one on a single node, in the
  same round trip.

  Input:
    KEYS[1] user record hash       <prefix>{u<hash>}:user:<userId>
    KEYS[2] user join-limit hash   <prefix>{u<hash>}:rl:<userId>   (fields tokens, at)

    ARGV[1] ticket id to reserve when the user has none
    ARGV[2] the search criteria JSON (kept so any node can create the ticket)
    ARGV[3] enqueue time in ms, '' for now (Redis time)
    ARGV[4] ticket ttl in ms
    ARGV[5] extra ms the record outlives the ticket's lifetime
    ARGV[6] join limit: tokens refilled per second, 0 for no limit
    ARGV[7] join limit: bucket size (burst)
    ARGV[8] a ticket id the caller knows has ended (matched or ended), '' for none: a record naming it is stale
            and is replaced as if absent

  Output:
    -3 (RateLimited) when the user's join limit is used up (nothing changed but the limit)
    otherwise { created, ticketId, criteriaJson, c0 }
      created  1 when ARGV[1] was reserved, 0 when the user already had a ticket (returned instead)
]]
--- @include "time"
--- @include "joinLimit"

local now = nowMs()
if not takeJoinToken(KEYS[2], now, tonumber(ARGV[6]), tonumber(ARGV[7])) then
  return -3
end

local cur = redis.call('HMGET', KEYS[1], 'ticket', 'crit', 'c0')
if cur[1] and cur[1] ~= ARGV[8] then
  return { 0, cur[1], cur[2], cur[3] }
end
local c0 = now
if ARGV[3] ~= '' then
  c0 = tonumber(ARGV[3])
end
redis.call('HSET', KEYS[1], 'ticket', ARGV[1], 'crit', ARGV[2], 'c0', string.format('%d', c0))
redis.call('PEXPIRE', KEYS[1], math.max(c0 + tonumber(ARGV[4]) + tonumber(ARGV[5]) - now, 1000))
return { 1, ARGV[1], ARGV[2], string.format('%d', c0) }
