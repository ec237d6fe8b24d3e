"""The library: admin-managed files by sha256 that `put` and `runscript` take.

Content lives in Redis as 1 MiB chunks under the content's sha256, so an agent that reaches
only the broker (an isolated one) can read it; one hash per name says which content the name
stands for. Every change watches one version counter, so adds and removes never interleave
(a blob is deleted only when no name uses it any more, and that is decided atomically).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from pydantic import BaseModel

from tasks import clock
from tasks.commands.library import LibraryFileArgs, check_library_name
from tasks.errors import (
    LibraryItemExistsError,
    LibraryItemNotFoundError,
    LibraryTooLargeError,
    UsageError,
)
from tasks.keys import Keys
from tasks.replies import as_text

if TYPE_CHECKING:
    from orchestrator.plane import ControlPlane

T = TypeVar("T")

#: Bytes per stored chunk: small enough never to stall Redis, large enough to be few.
CHUNK_BYTES = 1024 * 1024
#: An upload that never finished is forgotten after this long.
UPLOAD_TTL_S = 60 * 60
#: Longest description kept with a library file.
MAX_DESCRIPTION_CHARS = 1024
#: Where the scripts shipped with liveresponse are looked for: `library/` beside the packages
#: (a source checkout or an editable install), then in the working directory (the image).
SHIPPED_DIRS = (Path(__file__).resolve().parents[2] / "library", Path("library"))


class LibraryItem(BaseModel):
    """One library file as listed: what its name stands for, and who put it there."""

    name: str
    sha256: str
    size_bytes: int
    chunks: int
    description: str
    added_by: str
    added_at: float


def valid_name(name: str) -> str:
    """`name` if it is a library name, else UsageError saying what a name may be."""
    try:
        return check_library_name(name)
    except ValueError as exc:
        raise UsageError(str(exc), hint="name it with --name, e.g. --name check.sh") from None


def shipped_file(name: str) -> Path:
    """A script shipped in `library/` (e.g. persistence_check.sh), to add with `lr library add`."""
    for directory in SHIPPED_DIRS:
        if (directory / valid_name(name)).is_file():
            return directory / name
    raise LibraryItemNotFoundError(
        f"no shipped library file {name!r} in {' or '.join(str(d) for d in SHIPPED_DIRS)}",
        hint="run from a source checkout, or give the file's path to `lr library add`")


class LibraryStore:
    """The library in Redis under one key prefix."""

    def __init__(self, client: redis.Redis, keys: Keys, max_bytes: int) -> None:
        self.client = client
        self.keys = keys
        self.max_bytes = max_bytes

    def list(self) -> list[LibraryItem]:
        """Every library file, by name."""
        names = sorted(as_text(n) for n in self.client.smembers(self.keys.library_names))
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self.keys.library_item(name))
        return [_item(raw) for raw in pipe.execute() if raw]

    def get(self, name: str) -> LibraryItem:
        """The library file called `name`; LibraryItemNotFoundError when there is none."""
        raw = self.client.hgetall(self.keys.library_item(valid_name(name)))
        if not raw:
            raise LibraryItemNotFoundError(f"no library file named {name!r}",
                                           hint="see `lr library list`; an admin adds files "
                                                "with `lr library add FILE`")
        return _item(raw)

    def upload(self, name: str, declared_bytes: int | None = None) -> LibraryUpload:
        """Start storing a new file as `name`; refused at once when `declared_bytes` is over
        the limit, so no byte is read."""
        valid_name(name)
        if declared_bytes is not None:
            self.check_size(declared_bytes)
        return LibraryUpload(self, name)

    def add(self, name: str, data: bytes, added_by: str, *, description: str = "",
            replace: bool = False) -> tuple[LibraryItem, LibraryItem | None]:
        """Store `data` as `name` in one call (small files); see LibraryUpload.commit."""
        upload = self.upload(name, len(data))
        try:
            upload.write(data)
            return upload.commit(added_by, description=description, replace=replace)
        except BaseException:
            upload.abort()
            raise

    def remove(self, name: str) -> tuple[LibraryItem, bool]:
        """Delete `name`; also its content when no other name uses it. (item, content deleted)"""
        key = self.keys.library_item(valid_name(name))

        def remove_in(pipe: Any) -> tuple[LibraryItem, bool]:
            raw = pipe.hgetall(key)
            if not raw:
                raise LibraryItemNotFoundError(f"no library file named {name!r}",
                                               hint="see `lr library list`")
            item = _item(raw)
            drop = not self._in_use(pipe, item.sha256, but=name)
            pipe.multi()
            pipe.delete(key)
            pipe.srem(self.keys.library_names, name)
            pipe.incr(self.keys.library_version)
            if drop:
                self._delete_blob(pipe, item)
            return item, drop

        return _atomically(self.client, remove_in, self.keys.library_version)

    def check_size(self, size_bytes: int) -> None:
        """LibraryTooLargeError when `size_bytes` is over the library's limit."""
        if size_bytes > self.max_bytes:
            raise LibraryTooLargeError(
                f"the file is {size_bytes} bytes; the library takes at most "
                f"{self.max_bytes} bytes",
                hint="raise LR_LIBRARY_MAX_BYTES on the orchestrator, or use a smaller file")

    def _in_use(self, pipe: Any, sha256: str, *, but: str) -> bool:
        """Whether a name other than `but` stands for the content `sha256` (inside a watch)."""
        others = [as_text(n) for n in pipe.smembers(self.keys.library_names)]
        return any(as_text(pipe.hget(self.keys.library_item(n), "sha256")) == sha256
                   for n in others if n != but)

    def _delete_blob(self, pipe: Any, item: LibraryItem) -> None:
        if item.chunks:
            pipe.delete(*(self.keys.library_blob(item.sha256, n) for n in range(item.chunks)))


class LibraryUpload:
    """One file on its way into the library: chunks are stored as they come, hashed on the
    way, and become the named content only at `commit`; `abort` forgets them."""

    def __init__(self, store: LibraryStore, name: str) -> None:
        self.store = store
        self.name = name
        self.upload_id = uuid.uuid4().hex
        self.size_bytes = 0
        self.chunks = 0
        self._hasher = hashlib.sha256()
        self._buffer = bytearray()

    def write(self, data: bytes) -> None:
        """Take the next bytes; stores each full chunk; LibraryTooLargeError past the limit."""
        self.size_bytes += len(data)
        self.store.check_size(self.size_bytes)
        self._hasher.update(data)
        self._buffer += data
        while len(self._buffer) >= CHUNK_BYTES:
            self._flush(bytes(self._buffer[:CHUNK_BYTES]))
            del self._buffer[:CHUNK_BYTES]

    def commit(self, added_by: str, *, description: str = "",
               replace: bool = False) -> tuple[LibraryItem, LibraryItem | None]:
        """Make the uploaded bytes the content of the name; return (item, the item replaced).

        LibraryItemExistsError when the name is taken and `replace` is false.
        """
        if len(description) > MAX_DESCRIPTION_CHARS:
            raise UsageError(f"description longer than {MAX_DESCRIPTION_CHARS} characters")
        if self._buffer:
            self._flush(bytes(self._buffer))
            self._buffer.clear()
        store, keys = self.store, self.store.keys
        item = LibraryItem(name=self.name, sha256=self._hasher.hexdigest(),
                           size_bytes=self.size_bytes, chunks=self.chunks,
                           description=description, added_by=added_by, added_at=clock.now())
        key = keys.library_item(self.name)

        def commit_in(pipe: Any) -> LibraryItem | None:
            raw = pipe.hgetall(key)
            previous = _item(raw) if raw else None
            if previous is not None and not replace:
                raise LibraryItemExistsError(
                    f"the library already has {self.name!r} (sha256 {previous.sha256})",
                    hint="add it with --replace to change its content, or choose another "
                         "--name")
            drop_previous = (previous is not None and previous.sha256 != item.sha256
                             and not store._in_use(pipe, previous.sha256, but=self.name))
            pipe.multi()
            for n in range(self.chunks):
                blob = keys.library_blob(item.sha256, n)
                # Same sha256, same bytes: renaming onto an existing blob changes nothing.
                pipe.rename(keys.library_upload(self.upload_id, n), blob)
                pipe.persist(blob)
            pipe.hset(key, mapping=_fields(item))
            pipe.sadd(keys.library_names, self.name)
            pipe.incr(keys.library_version)
            if drop_previous and previous is not None:
                store._delete_blob(pipe, previous)
            return previous

        previous = _atomically(store.client, commit_in, keys.library_version)
        self.chunks = 0  # they are the library's now; abort must not touch them
        return item, previous

    def abort(self) -> None:
        """Delete whatever this upload stored."""
        if self.chunks:
            self.store.client.delete(*(self.store.keys.library_upload(self.upload_id, n)
                                       for n in range(self.chunks)))
            self.chunks = 0

    def _flush(self, chunk: bytes) -> None:
        self.store.client.set(self.store.keys.library_upload(self.upload_id, self.chunks),
                              chunk, ex=UPLOAD_TTL_S)
        self.chunks += 1


def prepare_library_args(plane: ControlPlane, args: LibraryFileArgs) -> LibraryFileArgs:
    """Preparer of put and runscript: the library name resolved to the sha256 and size the
    envelope then binds (LibraryItemNotFoundError, audited by the dispatcher, if unknown)."""
    item = library_of(plane).get(args.name)
    return args.model_copy(update={"sha256": item.sha256, "size_bytes": item.size_bytes})


def library_of(plane: ControlPlane) -> LibraryStore:
    """The control plane's library."""
    return LibraryStore(plane.client, plane.keys, plane.settings.library_max_bytes)


def _atomically(client: redis.Redis, func: Callable[[Any], T], watched: str) -> T:
    """`func(pipe)` under WATCH `watched`, retried until no other change got in between."""
    return client.transaction(func, watched,  # type: ignore[arg-type, return-value]
                              value_from_callable=True)


def _fields(item: LibraryItem) -> dict[str, str]:
    return {"name": item.name, "sha256": item.sha256, "size": str(item.size_bytes),
            "chunks": str(item.chunks), "description": item.description,
            "added_by": item.added_by, "added_at": repr(item.added_at)}


def _item(raw: dict[Any, Any]) -> LibraryItem:
    fields = {as_text(k): as_text(v) for k, v in raw.items()}
    return LibraryItem(name=fields["name"], sha256=fields["sha256"],
                       size_bytes=int(fields["size"]), chunks=int(fields["chunks"]),
                       description=fields.get("description", ""),
                       added_by=fields.get("added_by", ""),
                       added_at=float(fields.get("added_at") or 0))
