--[[
  Acknowledge matches that are safely in Postgres and delete them from the stream (the service uses one
  consumer group, so an acknowledged entry is needed by nobody).

  Input:
    KEYS[1] bucket match stream    <base>m

    ARGV[1]    consumer group name
    ARGV[2..n] stream entry ids

  Output:
    the number of entries acknowledged
]]

local acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
return acked
