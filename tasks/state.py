"""Command state in Redis, shared by both sides: atomic transitions so a command runs once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import redis

from tasks.envelope import CommandStatus
from tasks.keys import Keys
from tasks.replies import as_text

# KEYS[1] = command hash; ARGV[1] = new state; ARGV[2] = n allowed current states;
# ARGV[3 .. 2+n] = those states; the rest are field/value pairs set with the new state.
_TRANSITION_LUA = """
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {0, ''} end
local n = tonumber(ARGV[2])
for i = 3, 2 + n do
  if ARGV[i] == cur then
    redis.call('HSET', KEYS[1], 'state', ARGV[1])
    for j = 3 + n, #ARGV, 2 do
      redis.call('HSET', KEYS[1], ARGV[j], ARGV[j + 1])
    end
    return {1, cur}
  end
end
return {0, cur}
"""

# KEYS[1] = command hash, KEYS[2] = the agent's ledger key; ARGV[1] = ledger TTL,
# ARGV[2] = started_at. Only a queued command gets into the ledger, and a command already in
# the ledger is refused even if its state was reset to queued: the ledger lists what started.
_START_LUA = """
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {0, ''} end
if cur ~= 'queued' then return {0, cur} end
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return {-1, ''} end
redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', ARGV[2])
return {1, cur}
"""


class CommandStateStore:
    """Reads and moves command states under one key prefix."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._transition = client.register_script(_TRANSITION_LUA)
        self._start = client.register_script(_START_LUA)

    def start(self, command_id: str, ledger_key: str, ledger_ttl_s: int,
              started_at: float) -> tuple[int, CommandStatus | None]:
        """Record in the ledger and move queued → running, in one step.

        Returns (1, queued) when the command may run, (-1, None) when the ledger already had
        it (a replay), and (0, state before) when it is not queued (None: unknown command).
        """
        code, cur = self._start(keys=[self.keys.command(command_id), ledger_key],
                                args=[ledger_ttl_s, repr(started_at)])
        cur = cur.decode() if isinstance(cur, bytes) else cur
        return int(code), (CommandStatus(cur) if cur else None)

    def transition(
        self,
        command_id: str,
        to: CommandStatus,
        allowed_from: Iterable[CommandStatus],
        fields: Mapping[str, str | float | int] | None = None,
    ) -> tuple[bool, CommandStatus | None]:
        """Set state `to` if the current state is one of `allowed_from`.

        Returns (moved, state before); state before is None when the command is unknown.
        """
        froms = [str(s) for s in allowed_from]
        argv: list[str | float | int] = [str(to), len(froms), *froms]
        for k, v in (fields or {}).items():
            argv += [k, v]
        moved, cur = self._transition(keys=[self.keys.command(command_id)], args=argv)
        cur = cur.decode() if isinstance(cur, bytes) else cur
        return bool(moved), (CommandStatus(cur) if cur else None)

    def get(self, command_id: str) -> dict[str, str]:
        """All fields of one command's record (empty when unknown)."""
        raw = self.client.hgetall(self.keys.command(command_id))
        return {as_text(k): as_text(v) for k, v in raw.items()}

    def state(self, command_id: str) -> CommandStatus | None:
        """The command's current state, or None when unknown."""
        cur = self.client.hget(self.keys.command(command_id), "state")
        return CommandStatus(as_text(cur)) if cur else None
