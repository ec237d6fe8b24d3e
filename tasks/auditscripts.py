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
# ARGV[5] = the entries' values, each as its length (4 bytes, big-endian) then its bytes:
# per entry ts, actor, action, target, decision, details, hash, and, when ARGV[6] is '1', sig
# and mac. Each entry's prev is the hash of the one before (ARGV[1] for the first). One
# `struct.unpack` and one XADD per entry: the stored entry is as `APPEND_LUA` writes it.
# Returns {1, id of the first entry, held}, or {0, head} / {-1, ''} as above (nothing
# appended). The run's entries share the first one's millisecond (ids ms-seq, ms-seq+1, ...),
# so a verify that cuts the chain at millisecond boundaries never cuts a run.
APPEND_RUN_LUA = _HEAD_CHECK_LUA + """
local packed, signed = ARGV[5], ARGV[6] == '1'
local read = struct.unpack
local format = '>' .. string.rep('I4c0', signed and 9 or 7)
local at, count, prev, id = 1, 0, ARGV[1], '*'
local first, ms, seq, ts, actor, action, target, decision, details, hash, sig, mac
while at <= #packed do
  if signed then
    ts, actor, action, target, decision, details, hash, sig, mac, at = read(format, packed, at)
    id = redis.call('XADD', KEYS[1], id, 'ts', ts, 'actor', actor, 'action', action,
      'target', target, 'decision', decision, 'details', details, 'prev', prev, 'hash', hash,
      'sig', sig, 'mac', mac)
  else
    ts, actor, action, target, decision, details, hash, at = read(format, packed, at)
    id = redis.call('XADD', KEYS[1], id, 'ts', ts, 'actor', actor, 'action', action,
      'target', target, 'decision', decision, 'details', details, 'prev', prev, 'hash', hash)
  end
  if count == 0 then
    first = id
    ms, seq = string.match(id, '^(%d+)-(%d+)$')
    seq = tonumber(seq)
  end
  count = count + 1
  prev = hash
  id = ms .. '-' .. string.format('%d', seq + count)
end
redis.call('SET', KEYS[2], ARGV[2])
return {1, first, held}
"""
