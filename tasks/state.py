"""Command state in Redis, shared by both sides: atomic transitions between states.

The state coordinates the orchestrator and the agent (cancel, expiry); it is not what makes a
command run once: anyone who can write to Redis can reset it. That is the agent's ledger, on
the endpoint's disk (`worker_agent.ledger`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

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


class CommandStateStore:
    """Reads and moves command states under one key prefix."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._transition = client.register_script(_TRANSITION_LUA)

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

    def states(self, command_ids: Sequence[str]) -> list[CommandStatus | None]:
        """The current state of each command (None when unknown), in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for command_id in command_ids:
            pipe.hget(self.keys.command(command_id), "state")
        return [CommandStatus(as_text(cur)) if cur else None for cur in pipe.execute()]
