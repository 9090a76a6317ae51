--[[
  A join in one script, for a standalone (non-cluster) Redis: claimUser, then enqueueTicket of the fresh ticket
  (create, watch, pair), and the release of the user records of every ticket this call matched or ended. On a
  Redis Cluster the user's slot and the bucket's slot differ, so the nodes run claimUser, enqueueTicket and
  releaseUser there instead (three round trips); the outcome is the same.

  Keys not declared in KEYS (found in data, which only a standalone Redis allows; the node runs this script only
  when its client is not a Cluster):
    - the user's previous ticket, named by the user record (<prefix>{p<n>}:t:<ticketId>), read to tell a stale
      record (its ticket ended) from an open search;
    - the user records of the tickets this call matches or ends (field `urec` of each ticket), compare-and-
      deleted.

  Input:
    KEYS[1]  user record hash       <prefix>{u<hash>}:user:<userId>
    KEYS[2]  user join-limit hash   <prefix>{u<hash>}:rl:<userId>
    KEYS[3]  ticket hash            <base>t:<ticketId>
    KEYS[4]  ticket watcher set     <base>tw:<ticketId>
    KEYS[5]  bucket pools set       <base>pools
    KEYS[6]  bucket expiry zset     <base>exp
    KEYS[7]  bucket widening zset   <base>wid
    KEYS[8]  bucket orphans zset    <base>orph
    KEYS[9]  bucket match stream    <base>m
    KEYS[10] the watching node's index of waiting tickets in this bucket   <base>n:<ARGV[7]>

    ARGV[1]  key prefix of the deployment (to name the previous ticket's key)
    ARGV[2]  base (bucket key prefix with hash tag) of the fresh ticket
    ARGV[3]  fresh ticket id (in the bucket of ARGV[2])
    ARGV[4]  user id
    ARGV[5]  the search criteria JSON (kept in the user record)
    ARGV[6]  widening chain JSON [[pool, criteriaJson], ...], level 0 first
    ARGV[7]  watching node id (the calling node: matches made here are not published to it)
    ARGV[8]  ticket ttl in ms (waiting lifetime)
    ARGV[9]  extra ms the user record outlives the ticket's lifetime
    ARGV[10] join limit: tokens refilled per second, 0 for no limit (a retried join takes no token)
    ARGV[11] join limit: bucket size (burst)
    ARGV[12] widening step in ms, 0 for no widening
    ARGV[13] retention of ended tickets in ms
    ARGV[14] pub/sub channel prefix
    ARGV[15] most matches to make in this call
    ARGV[16] '1' to append matches to the stream (persistence on), '0' not to

  Output:
    -3 (RateLimited) when the user's join limit is used up (nothing changed but the limit)
    { 0, ticketId, criteriaJson, c0 }  the user already has an open ticket, or one whose creation may still be
                                       in flight (the record names a ticket that does not exist): nothing else
                                       changed; the node follows that ticket with enqueueTicket, as after
                                       claimUser
    { 1, ticketId, criteriaJson, c0, enqueued }  the fresh ticket was claimed and enqueued; `enqueued` is the
                                       reply of enqueueTicket ({ state, detail, by, c0, chain, made, ended },
                                       or -2 NotOwner)
]]
--- @include "joinLimit"
--- @include "enqueue"

local now = nowMs()
if not takeJoinToken(KEYS[2], now, tonumber(ARGV[10]), tonumber(ARGV[11])) then
  return -3
end

local cur = redis.call('HMGET', KEYS[1], 'ticket', 'crit', 'c0')
if cur[1] then
  local bucket = string.match(cur[1], '^(%d+)%.')
  local state = false
  if bucket then
    state = redis.call('HGET', ARGV[1] .. '{p' .. bucket .. '}:t:' .. cur[1], 'state')
  end
  if state == 'waiting' or not state then
    return { 0, cur[1], cur[2], cur[3] }
  end
  -- A stale record (its ticket ended): drop it and claim the fresh ticket.
  redis.call('DEL', KEYS[1])
end

local c0 = string.format('%d', now)
local ttl = tonumber(ARGV[8])
redis.call('HSET', KEYS[1], 'ticket', ARGV[3], 'crit', ARGV[5], 'c0', c0)
redis.call('PEXPIRE', KEYS[1], math.max(ttl + tonumber(ARGV[9]), 1000))

local ctx = newContext(ARGV[2], ARGV[14], ARGV[13], ARGV[12], 5, now)
ctx.self = ARGV[7]
ctx.releaseUsers = true
if ARGV[16] == '1' then
  ctx.stream = KEYS[9]
end

local enqueued = enqueue(ctx, {
  id = ARGV[3],
  tk = KEYS[3],
  watchers = KEYS[4],
  index = KEYS[10],
  user = ARGV[4],
  c0 = c0,
  chain = ARGV[6],
  node = ARGV[7],
  create = true,
  ttl = ttl,
  pairLimit = tonumber(ARGV[15]),
  urec = KEYS[1],
})
return { 1, ARGV[3], ARGV[5], c0, enqueued }
