--[[
  The body of enqueueTicket, shared with joinTicket (which claims the user record first, on a standalone Redis),
  pulled into a script with `--- @include "enqueue"`.

  enqueue(ctx, e) puts ticket e.id in its pool (creating it when e.create and absent), registers e.node as a
  watcher, pairs the pool at once and returns the reply of enqueueTicket (see its header):
    -1 (TicketNotFound), -2 (NotOwner), or { state, detail, by, c0, chain, made, ended }

  `ctx` as in "tickets" (the bucket of the ticket). `e`:
    e.id         ticket id
    e.tk         ticket hash                <base>t:<id>
    e.watchers   ticket watcher set         <base>tw:<id>
    e.index      the watching node's index of waiting tickets in this bucket   <base>n:<node>
    e.user       user id (must own the ticket)
    e.c0         enqueue time (ms) as a string, used when creating
    e.chain      widening chain JSON [[pool, criteriaJson], ...], level 0 first, used when creating
    e.node       watching node id, '' for none
    e.create     true to create the ticket when absent, false to answer TicketNotFound
    e.ttl        ticket ttl in ms (waiting lifetime)
    e.pairLimit  most matches to make
    e.urec       key of the user's record, written into the ticket when creating ('' for none)
]]
--- @include "tickets"

local function enqueue(ctx, e)
  local id = e.id
  local tk = e.tk
  local ttl = e.ttl

  -- What this call learns about a ticket it creates (saves reading it back): its state, pool and key ttl.
  local state, pool, keyTtl
  if redis.call('EXISTS', tk) == 0 then
    if not e.create then
      return -1
    end
    local c0 = tonumber(e.c0)
    local chain = cjson.decode(e.chain)
    local first = chain[1]
    local fields = { 'user', e.user, 'c0', e.c0, 'pool', first[1], 'crit', first[2], 'level', 0, 'chain', e.chain }
    if e.urec ~= '' then
      table.insert(fields, 'urec')
      table.insert(fields, e.urec)
    end
    pool = first[1]
    if c0 + ttl <= ctx.now then
      -- Claimed long ago and never enqueued: it is already past its lifetime.
      state = 'ended'
      keyTtl = ctx.retention
      for _, v in ipairs({ 'state', 'ended', 'reason', 'expired', 'by', '', 'endedAt', ctx.now }) do
        table.insert(fields, v)
      end
      redis.call('HSET', tk, unpack(fields))
      redis.call('PEXPIRE', tk, keyTtl)
    else
      state = 'waiting'
      keyTtl = c0 + ttl + ctx.retention - ctx.now
      table.insert(fields, 'state')
      table.insert(fields, 'waiting')
      redis.call('HSET', tk, unpack(fields))
      redis.call('PEXPIRE', tk, keyTtl)
      redis.call('ZADD', ctx.exp, c0 + ttl, id)
      if ctx.widenMs > 0 and #chain > 1 then
        redis.call('ZADD', ctx.wid, c0 + ctx.widenMs, id)
      end
      redis.call('ZADD', poolKey(ctx, first[1]), c0, id)
      redis.call('SADD', ctx.pools, first[1])
    end
  elseif redis.call('HGET', tk, 'user') ~= e.user then
    return -2
  end

  if e.node ~= '' then
    redis.call('SADD', e.watchers, e.node)
    redis.call('ZREM', ctx.orph, id)
    redis.call('PEXPIRE', e.watchers, math.max(keyTtl or redis.call('PTTL', tk), 1000))
  end

  if not state then
    local f = redis.call('HMGET', tk, 'state', 'pool')
    state, pool = f[1], f[2]
  end
  if state == 'waiting' then
    tryPair(ctx, pool, e.pairLimit)
  end

  local r = redis.call('HMGET', tk, 'state', 'match', 'reason', 'by', 'c0', 'chain')
  if e.node ~= '' and r[1] == 'waiting' then
    -- In the node's index (atomically with becoming a watcher), so that if the node dies, the node that cleans
    -- up after it finds the ticket. The index outlives every waiting ticket in it (none waits longer than ttl).
    redis.call('SADD', e.index, id)
    if redis.call('PTTL', e.index) < ttl then
      redis.call('PEXPIRE', e.index, ttl)
    end
  end
  local detail = ''
  if r[1] == 'matched' then
    detail = r[2]
  elseif r[1] == 'ended' then
    detail = r[3]
  end
  return { r[1], detail, r[4] or '', r[5], r[6], ctx.made, ctx.ended }
end
