"""The audit chain's Lua append scripts: compare-and-append of one entry, and of a run."""

from __future__ import annotations

# Both scripts begin alike: the head must still be the expected prev (ARGV[1]); `held` says
# whether the witnessed entry (ARGV[3] id, ARGV[4] hash) is still in the stream as witnessed.
_HEAD_CHECK_LUA = """
local head = redis.call('GET', KEYS[2])
if not head then
  if redis.call('XLEN', KEYS[1]) > 0 then return {-1, ''} end
  head = string.rep('0', 64)
end
if head ~= ARGV[1] then return {0, head} end
local held = 1
if ARGV[3] ~= '' and ARGV[1] ~= ARGV[4] then
  held = 0
  local seen = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
  if #seen == 1 then
    local fields = seen[1][2]
    for i = 1, #fields, 2 do
      if fields[i] == 'hash' and fields[i + 1] == ARGV[4] then held = 1 end
    end
  end
end
"""

# KEYS[1] = stream, KEYS[2] = head; ARGV[1] = expected prev, ARGV[2] = new hash,
# ARGV[3], ARGV[4] = id and hash of the entry the appender witnessed last ('' = none),
# ARGV[5..] = field/value pairs of the entry. Appends only while the head is still the
# expected prev, so two writers can never both chain onto the same entry (a fork).
# Returns {1, id, held} on success, where held is 0 when the witnessed entry is no longer in
# the stream with that hash (the orchestrator then does not move its witness past it). When
# the expected prev is the witnessed hash no lookup is needed: the new entry's hash binds it.
# {0, current head} on a conflict; {-1, ''} when the head key is gone while entries remain
# (someone deleted it: appending would start a second chain).
APPEND_LUA = _HEAD_CHECK_LUA + """
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 5))
redis.call('SET', KEYS[2], ARGV[2])
return {1, id, held}
"""

# The same check, then a run of entries in one call, all or none: KEYS as above; ARGV[1] =
# expected prev of the first, ARGV[2] = hash of the last, ARGV[3], ARGV[4] = witness as above;
# then per entry one JSON array of its field/value pairs. Returns {1, ids, held},
# or {0, head} / {-1, ''} as above (nothing appended). The run's entries share the first one's
# millisecond (ids ms-seq, ms-seq+1, ...), so a verify that cuts the chain at millisecond
# boundaries never cuts a run.
APPEND_RUN_LUA = _HEAD_CHECK_LUA + """
local ids = {}
local ms, seq
for i = 5, #ARGV do
  local id = '*'
  if ms then id = ms .. '-' .. string.format('%d', seq + #ids) end
  ids[#ids + 1] = redis.call('XADD', KEYS[1], id, unpack(cjson.decode(ARGV[i])))
  if not ms then
    ms, seq = string.match(ids[1], '^(%d+)-(%d+)$')
    seq = tonumber(seq)
  end
end
redis.call('SET', KEYS[2], ARGV[2])
return {1, ids, held}
"""
