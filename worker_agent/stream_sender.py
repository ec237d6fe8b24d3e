"""The sending end of a file transfer: appends to its Redis stream, with back-pressure.

At most `window_chunks` entries wait unread in the stream: before appending, the sender waits
until the receiver (which deletes what it consumed) makes room, so Redis, the agent and the
orchestrator each hold a bounded number of chunks whatever the file size. A receiver that makes
no room within the stall timeout is given up on. Every append refreshes the stream's TTL, so a
transfer whose both ends died leaves nothing behind for long.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis

from tasks.errors import TransferError, TransferStalledError
from tasks.transfer import error_fields

log = logging.getLogger(__name__)

#: First and longest pause while waiting for the receiver to make room.
FIRST_PAUSE_S = 0.001
LONGEST_PAUSE_S = 0.05
#: A stream lives this many stall timeouts past its newest entry (and never less than a minute).
TTL_STALLS = 4
MIN_TTL_S = 60

#: An entry's fields (redis-py types its stream fields loosely).
Fields = Mapping[Any, Any]


class StreamSender:
    """Appends one transfer's entries to `key`, never more than `window_chunks` unread."""

    def __init__(self, client: redis.Redis, key: str, *, window_chunks: int,
                 stall_timeout_s: float, sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.key = key
        self.window_chunks = window_chunks
        self.stall_timeout_s = stall_timeout_s
        self.ttl_s = max(MIN_TTL_S, int(TTL_STALLS * stall_timeout_s))
        self._sleep = sleep
        self._monotonic = monotonic
        #: Entries we may still append without asking the stream how full it is.
        self._room = 0
        self.started = False

    def begin(self, fields: Fields) -> None:
        """Create the stream with its first entry."""
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(self.key, dict[Any, Any](fields))
        pipe.expire(self.key, self.ttl_s)
        pipe.execute()
        self.started = True
        self._room = 0

    def send(self, fields: Fields) -> None:
        """Append one entry once the receiver made room; TransferError if it deleted the stream
        (it gave the transfer up), TransferStalledError if it made no room in time."""
        if self._room <= 0:
            self._room = self.window_chunks - self._wait_for_room()
        pipe = self.client.pipeline(transaction=False)
        # NOMKSTREAM: a stream the receiver deleted stays deleted; we learn it gave up.
        pipe.xadd(self.key, dict[Any, Any](fields), nomkstream=True)
        pipe.expire(self.key, self.ttl_s)
        entry_id, _ = pipe.execute()
        if entry_id is None:
            raise TransferError("the orchestrator stopped receiving the file (transfer abandoned)",
                                hint="see the command's record and the orchestrator's log")
        self._room -= 1

    def fail(self, code: str, message: str) -> None:
        """Tell the receiver why the transfer ends early (best effort: we are failing already)."""
        if not self.started:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.xadd(self.key, dict[Any, Any](error_fields(code, message)), nomkstream=True)
            pipe.expire(self.key, self.ttl_s)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not send the error marker of %s: %s", self.key, exc)

    def abandon(self) -> None:
        """Delete the stream: nobody reads it any more."""
        try:
            self.client.delete(self.key)
        except redis.RedisError as exc:
            log.warning("could not delete abandoned transfer %s: %s", self.key, exc)

    def _wait_for_room(self) -> int:
        """Wait until fewer than `window_chunks` entries are unread; return how many are."""
        backlog = int(self.client.xlen(self.key))
        if backlog < self.window_chunks:
            return backlog
        lowest, since = backlog, self._monotonic()
        pause = FIRST_PAUSE_S
        while backlog >= self.window_chunks:
            if backlog < lowest:
                lowest, since = backlog, self._monotonic()
            elif self._monotonic() - since > self.stall_timeout_s:
                raise TransferStalledError(
                    f"the orchestrator read nothing for {self.stall_timeout_s:g} s; "
                    "transfer given up",
                    hint="check that the orchestrator is running; then run getfile again")
            self._sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE_S)
            backlog = int(self.client.xlen(self.key))
        return backlog
