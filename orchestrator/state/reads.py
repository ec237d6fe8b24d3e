"""One round trip for the first reads of a request: its token, user, session and device.

A command's checks read the token, then the user it names, then the session, then the
session's device: four round trips, each needing the one before. Two of those links never
change (a token's hash always names the same user; a session always belongs to one device), so
once seen they are remembered in `ReadHints` (bounded, least recently used dropped), and the
next request of the same token and session fetches all four keys in one pipeline. Nothing is
cached but those names: every value the checks look at is read from Redis for this request,
so a revoked token, changed grants, a closed session or a newly isolated device count at once.
A hint that turned out wrong costs nothing but a read: the check asks for the key it needs,
and a key that was not prefetched is read then. The pipeline is not a transaction and each
command names one key, so it runs on Redis Cluster too.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Protocol

import redis

from tasks.keys import Keys

#: Names remembered per kind (tokens, sessions), the least recently used dropped first: a
#: fleet of 10,000 devices with a session each stays within it (about 7 MiB when full).
MAX_HINTS = 16384


class Reader(Protocol):
    """What the checks read keys with: a Redis client, or a request's `Reads`."""

    def get(self, name: str) -> Any: ...

    def hgetall(self, name: str) -> Any: ...


class Reads:
    """A request's prefetched values, each handed out once; any other read goes to Redis."""

    def __init__(self, client: redis.Redis, fetched: dict[str, Any] | None = None) -> None:
        self.client = client
        self._fetched = fetched or {}

    def get(self, name: str) -> Any:
        if name in self._fetched:
            return self._fetched.pop(name)
        return self.client.get(name)

    def hgetall(self, name: str) -> Any:
        if name in self._fetched:
            return self._fetched.pop(name)
        return self.client.hgetall(name)


class _Lru:
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: str) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class ReadHints:
    """The names that never change for a token hash and a session, as last seen."""

    def __init__(self, client: redis.Redis, keys: Keys, size: int = MAX_HINTS) -> None:
        self.client = client
        self.keys = keys
        self._users = _Lru(size)
        self._devices = _Lru(size)

    def learn_user(self, token_digest: str, user: str) -> None:
        self._users.put(token_digest, user)

    def learn_device(self, session_id: str, device_id: str) -> None:
        self._devices.put(session_id, device_id)

    def sizes(self) -> tuple[int, int]:
        """(tokens, sessions) remembered: bounded by MAX_HINTS each."""
        return len(self._users), len(self._devices)

    def prefetch(self, token_digest: str | None, session_id: str | None) -> Reads:
        """The request's reads, with everything the hints name fetched in one round trip."""
        names: list[tuple[str, str]] = []
        if token_digest is not None:
            names.append(("get", self.keys.token(token_digest)))
            user = self._users.get(token_digest)
            if user is not None:
                names.append(("hgetall", self.keys.user(user)))
        if session_id is not None:
            names.append(("hgetall", self.keys.session(session_id)))
            device = self._devices.get(session_id)
            if device is not None:
                names.append(("hgetall", self.keys.device(device)))
        if len(names) < 2:  # nothing to merge: read as usual
            return Reads(self.client)
        pipe = self.client.pipeline(transaction=False)
        for verb, key in names:
            getattr(pipe, verb)(key)
        values = pipe.execute()
        return Reads(self.client, {key: value for (_, key), value in zip(names, values,
                                                                           strict=True)})
