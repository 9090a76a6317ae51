--[[
  Put a ticket in its pool (creating it when asked and absent), register the calling node as a watcher,
  and pair the pool at once. Idempotent: calling it again for an existing ticket only adds the watcher and
  reports the ticket's state, so a second tab, a resume after a reconnect and a node adopting a ticket all
  use it.

  Input:
    KEYS[1] ticket hash            <base>t:<ticketId>
    KEYS[2] ticket watcher set     <base>tw:<ticketId>
    KEYS[3] bucket pools set       <base>pools
    KEYS[4] bucket expiry zset     <base>exp
    KEYS[5] bucket widening zset   <base>wid
    KEYS[6] bucket orphans zset    <base>orph
    KEYS[7] bucket match stream    <base>m
    KEYS[8] the watching node's index of waiting tickets in this bucket   <base>n:<ARGV[6]>

    ARGV[1]  base (bucket key prefix with hash tag)
    ARGV[2]  ticket id
    ARGV[3]  user id (must own the ticket)
    ARGV[4]  enqueue time in ms (the user's claim time), used when creating
    ARGV[5]  widening chain JSON [[pool, criteriaJson], ...], level 0 first, used when creating
    ARGV[6]  watching node id, '' for none (the calling node: matches made here are not published to it,
             it delivers them from `made`)
    ARGV[7]  '1' to create the ticket when absent, '0' to answer TICKET_NOT_FOUND
    ARGV[8]  ticket ttl in ms (waiting lifetime)
    ARGV[9]  widening step in ms, 0 for no widening
    ARGV[10] retention of ended tickets in ms
    ARGV[11] pub/sub channel prefix
    ARGV[12] most matches to make in this call
    ARGV[13] '1' to append matches to the stream (persistence on), '0' not to
    ARGV[14] key of the user's record, kept in the ticket when creating it, so that a script on a standalone
             Redis can release the record when the ticket stops waiting ('' on a Redis Cluster: not kept)

  Output:
    -1 (TicketNotFound) when absent and ARGV[7] is '0'
    -2 (NotOwner) when the ticket belongs to another user
    otherwise { state, detail, by, c0, chain, made, ended }
      state   'waiting' | 'matched' | 'ended'
      detail  the match JSON when matched, the reason when ended, '' when waiting
      by      the search id that cancelled it, or ''
      c0      enqueue time (ms) as a string
      chain   the widening chain JSON
      made    array of match JSONs made by this call
      ended   array of {ticketId, userId, reason} ended by this call
]]
--- @include "enqueue"

local ctx = newContext(ARGV[1], ARGV[11], ARGV[10], ARGV[9], 3)
if ARGV[13] == '1' then
  ctx.stream = KEYS[7]
end
if ARGV[6] ~= '' then
  ctx.self = ARGV[6]
end

return enqueue(ctx, {
  id = ARGV[2],
  tk = KEYS[1],
  watchers = KEYS[2],
  index = KEYS[8],
  user = ARGV[3],
  c0 = ARGV[4],
  chain = ARGV[5],
  node = ARGV[6],
  create = ARGV[7] == '1',
  ttl = tonumber(ARGV[8]),
  pairLimit = tonumber(ARGV[12]),
  urec = ARGV[14] or '',
})
