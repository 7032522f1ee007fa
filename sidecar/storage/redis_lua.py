"""The Lua scripts of the Redis backend: one that reads, one that commits, one for id blocks.

Both main scripts take the same arguments (built by `redis_unit`):

    KEYS  = the 5 store-wide keys (meta, sessions, expiry, globals, gtime), the node key,
            then 6 keys per session involved (h, v, i, p, st, ord: `redis_layout`)
    ARGV  = k, k session ids (raw bytes), token, channel, message,
            checks ..., "|", operations ...

Checks (what the unit read, as it read it; a failed one makes the script answer {0, failed}
without doing anything, and the unit raises `Conflict`):

    h j FIELD EXPECTED        a header field (hv, ver or cv) is EXPECTED ("" = no session)
    f j PART FIELD EXPECTED   a field of the session's hash number PART is EXPECTED ("" = none)
    x j NOW                   the session exists and last_accessed + ttl < NOW (still expired)
    g ID EXPECTED             the global program's stored_at is EXPECTED ("" = none)

Read operations (read script; answers {1, result, ...}):

    L j          the whole session: {HGETALL h, HGETALL v, HGETALL i, HGETALL p, HGETALL st, ZRANGE ord}
    m            {HGETALL meta, ZCARD sessions}
    s            every session id, oldest creation first
    e NOW LIMIT  up to LIMIT {id, last_accessed + ttl} with last_accessed + ttl < NOW
    r ID         {the global program's data or nil, its stored_at or nil}
    o CUTOFF     every {id, stored_at} of global programs with stored_at < CUTOFF

Write operations (commit script; all checks pass, then everything is validated, then written, so
an error never leaves half a commit; answers {1, {j, cv before, HGETALL h after}, ...}):

    I j CA LA TTL REST VC PC TU REV   insert the session (its id in the index, expiry, order)
    R j CA LA TTL REST VC PC TU REV   replace the header, drop variables, index and programs
    T j LA                            touch (last_accessed = LA unless it is later already)
    C j LA DV DP DU REST              changed: the same la, rev + 1, counters + deltas, REST unless ""
    D j                               delete the session
    V j VID BYTES STAMP               put a variable (a new id goes to the end of the order)
    v j VID                           delete a variable
    N j KEY VID / n j KEY             put / delete a name index entry
    P j PKEY BYTES STAMP              put a program
    K NAME DELTA                      a store counter + DELTA
    M NUMBER                          variable_number = max(variable_number, NUMBER) (decimals)
    G ID BYTES AT / g ID              put / delete a global program

Every commit sets the node key to its token (an in-doubt commit is resolved by reading it) and,
when a channel is given and anyone besides the committing sidecar subscribes to it, publishes the
message there (the change feed: `redis.RedisStorage`). Each sidecar's subscription also holds
`<channel>:<node id>` (the token's part before ':'), so "anyone besides" is the channel's
subscribers minus that one's: right also while the committing sidecar's own subscription is down.
"""

_PRELUDE = r"""
local nk = tonumber(ARGV[1])
local function key(j, part) return KEYS[6 + (j - 1) * 6 + part] end
local function hget(k, f)
  local v = redis.call('HGET', k, f)
  if v then return v end
  return ''
end
local n = #ARGV
local a = nk + 5
local failed = {}
while a <= n and ARGV[a] ~= '|' do
  local op = ARGV[a]
  if op == 'h' then
    local j = tonumber(ARGV[a + 1])
    if hget(key(j, 1), ARGV[a + 2]) ~= ARGV[a + 3] then failed[#failed + 1] = j end
    a = a + 4
  elseif op == 'f' then
    local j = tonumber(ARGV[a + 1])
    if hget(key(j, tonumber(ARGV[a + 2])), ARGV[a + 3]) ~= ARGV[a + 4] then failed[#failed + 1] = j end
    a = a + 5
  elseif op == 'x' then
    local j = tonumber(ARGV[a + 1])
    local h = key(j, 1)
    local la = redis.call('HGET', h, 'la')
    if (not la) or tonumber(la) + tonumber(redis.call('HGET', h, 'ttl')) >= tonumber(ARGV[a + 2]) then
      failed[#failed + 1] = j
    end
    a = a + 3
  elseif op == 'g' then
    local s = redis.call('ZSCORE', KEYS[5], ARGV[a + 1])
    local expected = ARGV[a + 2]
    if s then
      if expected == '' or tonumber(s) ~= tonumber(expected) then failed[#failed + 1] = 0 end
    elseif expected ~= '' then
      failed[#failed + 1] = 0
    end
    a = a + 3
  else
    return redis.error_reply('unknown check ' .. op)
  end
end
if #failed > 0 then return {0, failed} end
a = a + 1
"""

READ = (
    "#!lua flags=no-writes\n"
    + _PRELUDE
    + r"""
local out = {1}
while a <= n do
  local op = ARGV[a]
  if op == 'L' then
    local j = tonumber(ARGV[a + 1])
    out[#out + 1] = {
      redis.call('HGETALL', key(j, 1)), redis.call('HGETALL', key(j, 2)),
      redis.call('HGETALL', key(j, 3)), redis.call('HGETALL', key(j, 4)),
      redis.call('HGETALL', key(j, 5)), redis.call('ZRANGE', key(j, 6), 0, -1)}
    a = a + 2
  elseif op == 'm' then
    out[#out + 1] = {redis.call('HGETALL', KEYS[1]), redis.call('ZCARD', KEYS[2])}
    a = a + 1
  elseif op == 's' then
    out[#out + 1] = redis.call('ZRANGE', KEYS[2], 0, -1)
    a = a + 1
  elseif op == 'e' then
    out[#out + 1] = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[a + 1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[a + 2]))
    a = a + 3
  elseif op == 'r' then
    out[#out + 1] = {redis.call('HGET', KEYS[4], ARGV[a + 1]), redis.call('ZSCORE', KEYS[5], ARGV[a + 1])}
    a = a + 2
  elseif op == 'o' then
    out[#out + 1] = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', '(' .. ARGV[a + 1], 'WITHSCORES')
    a = a + 2
  else
    return redis.error_reply('unknown read ' .. op)
  end
end
return out
"""
)

COMMIT = (
    "#!lua\n"
    + _PRELUDE
    + r"""
local first = a
local sizes = {I = 10, R = 10, T = 3, C = 7, D = 2, V = 5, v = 3, N = 4, n = 3, P = 5, K = 3, M = 2, G = 4, g = 2}
local pre = {}
local order = {}
-- validate everything before the first write: a Redis script is not undone by an error
while a <= n do
  local op = ARGV[a]
  local size = sizes[op]
  if not size then return redis.error_reply('unknown operation ' .. op) end
  if a + size - 1 > n then return redis.error_reply('truncated operation ' .. op) end
  if op ~= 'K' and op ~= 'M' and op ~= 'G' and op ~= 'g' then
    local j = tonumber(ARGV[a + 1])
    if not pre[j] then
      pre[j] = hget(key(j, 1), 'cv')
      order[#order + 1] = j
    end
    if op == 'C' then
      local h = key(j, 1)
      for _, f in ipairs({'rev', 'vc', 'pc', 'tu'}) do
        if #hget(h, f) > 17 then return redis.error_reply('session counter ' .. f .. ' is beyond what Redis can add to') end
      end
    end
  end
  a = a + size
end
local function dec_less(x, y)
  if #x ~= #y then return #x < #y end
  return x < y
end
local function expiry(j, la)
  redis.call('ZADD', KEYS[3], tonumber(la) + tonumber(hget(key(j, 1), 'ttl')), ARGV[1 + j])
end
local function later(j, la)
  -- last_accessed never moves back: another node's clock may be a second behind this one's
  local current = redis.call('HGET', key(j, 1), 'la')
  if current and tonumber(current) > tonumber(la) then return current end
  return la
end
local function ordered(j, member)
  if not redis.call('ZSCORE', key(j, 6), member) then
    redis.call('ZADD', key(j, 6), redis.call('HINCRBY', key(j, 1), 'oseq', 1), member)
  end
end
local tok = ARGV[nk + 2]
local header = {}
local content = {}
a = first
while a <= n do
  local op = ARGV[a]
  local j = tonumber(ARGV[a + 1])
  if op == 'V' then
    redis.call('HSET', key(j, 2), ARGV[a + 2], ARGV[a + 3])
    redis.call('HSET', key(j, 5), 'v:' .. ARGV[a + 2], ARGV[a + 4])
    ordered(j, 'v:' .. ARGV[a + 2])
    content[j] = true
  elseif op == 'C' then
    local h = key(j, 1)
    local la = later(j, ARGV[a + 2])
    redis.call('HSET', h, 'la', la)
    redis.call('HINCRBY', h, 'rev', 1)
    redis.call('HINCRBY', h, 'vc', ARGV[a + 3])
    redis.call('HINCRBY', h, 'pc', ARGV[a + 4])
    redis.call('HINCRBY', h, 'tu', ARGV[a + 5])
    if ARGV[a + 6] ~= '' then redis.call('HSET', h, 'rest', ARGV[a + 6], 'hv', tok) end
    expiry(j, la)
    header[j] = true
  elseif op == 'T' then
    local la = later(j, ARGV[a + 2])
    redis.call('HSET', key(j, 1), 'la', la)
    expiry(j, la)
    header[j] = true
  elseif op == 'I' or op == 'R' then
    local h = key(j, 1)
    if op == 'I' then
      local seq = redis.call('HINCRBY', KEYS[1], 'session_seq', 1)
      redis.call('HSET', h, 'id', ARGV[1 + j], 'seq', seq)
      redis.call('ZADD', KEYS[2], seq, ARGV[1 + j])
    else
      redis.call('DEL', key(j, 2), key(j, 3), key(j, 4), key(j, 5), key(j, 6))
    end
    redis.call('HSET', h, 'ca', ARGV[a + 2], 'la', ARGV[a + 3], 'ttl', ARGV[a + 4], 'rest', ARGV[a + 5],
      'vc', ARGV[a + 6], 'pc', ARGV[a + 7], 'tu', ARGV[a + 8], 'rev', ARGV[a + 9], 'oseq', 0,
      'hv', tok, 'ver', tok, 'cv', tok)
    redis.call('ZADD', KEYS[3], tonumber(ARGV[a + 3]) + tonumber(ARGV[a + 4]), ARGV[1 + j])
  elseif op == 'D' then
    redis.call('DEL', key(j, 1), key(j, 2), key(j, 3), key(j, 4), key(j, 5), key(j, 6))
    redis.call('ZREM', KEYS[2], ARGV[1 + j])
    redis.call('ZREM', KEYS[3], ARGV[1 + j])
    header[j] = nil
    content[j] = nil
  elseif op == 'v' then
    redis.call('HDEL', key(j, 2), ARGV[a + 2])
    redis.call('HDEL', key(j, 5), 'v:' .. ARGV[a + 2])
    redis.call('ZREM', key(j, 6), 'v:' .. ARGV[a + 2])
    content[j] = true
  elseif op == 'N' then
    redis.call('HSET', key(j, 3), ARGV[a + 2], ARGV[a + 3])
    content[j] = true
  elseif op == 'n' then
    redis.call('HDEL', key(j, 3), ARGV[a + 2])
    content[j] = true
  elseif op == 'P' then
    redis.call('HSET', key(j, 4), ARGV[a + 2], ARGV[a + 3])
    redis.call('HSET', key(j, 5), 'p:' .. ARGV[a + 2], ARGV[a + 4])
    ordered(j, 'p:' .. ARGV[a + 2])
    content[j] = true
  elseif op == 'K' then
    redis.call('HINCRBY', KEYS[1], ARGV[a + 1], ARGV[a + 2])
  elseif op == 'M' then
    if dec_less(hget(KEYS[1], 'variable_number'), ARGV[a + 1]) then
      redis.call('HSET', KEYS[1], 'variable_number', ARGV[a + 1])
    end
  elseif op == 'G' then
    redis.call('HSET', KEYS[4], ARGV[a + 1], ARGV[a + 2])
    redis.call('ZADD', KEYS[5], ARGV[a + 3], ARGV[a + 1])
  elseif op == 'g' then
    redis.call('HDEL', KEYS[4], ARGV[a + 1])
    redis.call('ZREM', KEYS[5], ARGV[a + 1])
  end
  a = a + sizes[op]
end
local out = {1}
for _, j in ipairs(order) do
  local h = key(j, 1)
  if redis.call('EXISTS', h) == 1 then
    if content[j] then redis.call('HSET', h, 'cv', tok, 'ver', tok)
    elseif header[j] then redis.call('HSET', h, 'ver', tok) end
  end
  out[#out + 1] = {j, pre[j], redis.call('HGETALL', h)}
end
redis.call('SET', KEYS[6], tok, 'EX', 86400)
if ARGV[nk + 3] ~= '' then
  -- only when someone besides this sidecar listens (its own message would only wake it up)
  local own = ARGV[nk + 3] .. ':' .. string.match(tok, '^[^:]*')
  local listening = redis.call('PUBSUB', 'NUMSUB', ARGV[nk + 3], own)
  if listening[2] > listening[4] then redis.call('PUBLISH', ARGV[nk + 3], ARGV[nk + 4]) end
end
return out
"""
)

NUMBERS = r"""
-- a block of variable numbers: KEYS[1] the meta hash; ARGV[1] the value the caller saw ('' when
-- none yet), ARGV[2] the new value. Set only if unchanged (the caller does big-number arithmetic).
local current = redis.call('HGET', KEYS[1], 'variable_number') or ''
if current == ARGV[1] then
  redis.call('HSET', KEYS[1], 'variable_number', ARGV[2])
  return {1, ARGV[2]}
end
return {0, current}
"""
