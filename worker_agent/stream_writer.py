"""A file made on the fly (an archive, a memory dump) written into a command's transfer stream.

`getfile` knows its file's size before it sends; `collect` and `memdump` learn theirs only at
the end, so their `begin` entry is marked *streamed* and announces the most bytes that may
follow (the limit). Bytes are gathered into fixed-size chunks, hashed as they go and sent with
the same back-pressure as `getfile`; past the limit the writer raises, the agent sends an
error marker and the orchestrator keeps nothing. Memory stays one chunk whatever the size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from celery.exceptions import SoftTimeLimitExceeded

from tasks.errors import FileTooLargeError, LiveResponseError, TransferStalledError
from tasks.transfer import begin_fields, chunk_fields, end_fields
from worker_agent.context import CommandContext
from worker_agent.stream_sender import StreamSender
from worker_agent.watchdog import CommandCancelled


class StreamedFile:
    """Write-only file object whose bytes go, in chunks, into a transfer stream."""

    def __init__(self, sender: StreamSender, chunk_bytes: int, max_bytes: int,
                 what: str) -> None:
        self.sender = sender
        self.chunk_bytes = chunk_bytes
        self.max_bytes = max_bytes
        self.what = what
        self.size_bytes = 0
        self.chunks = 0
        self._hasher = hashlib.sha256()
        self._buffer = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Take `data`; send every full chunk. FileTooLargeError past the limit."""
        count = len(data)
        if self.size_bytes + count > self.max_bytes:
            raise FileTooLargeError(
                f"{self.what} passed the limit of {self.max_bytes} bytes; nothing was kept",
                hint="collect less (a narrower path or glob), or raise --max-bytes "
                     "(at most LR_GETFILE_MAX_BYTES)")
        self._hasher.update(data)
        self._buffer += data
        self.size_bytes += count
        while len(self._buffer) >= self.chunk_bytes:
            self._send(self.chunk_bytes)
        return count

    def flush(self) -> None:
        """Nothing to do: chunks leave when full, the last one at `finish`."""

    def finish(self) -> str:
        """Send what is left and the end marker; the sha256 of everything written."""
        if self._buffer:
            self._send(len(self._buffer))
        digest = self._hasher.hexdigest()
        self.sender.send(end_fields(self.size_bytes, digest, self.chunks))
        return digest

    def _send(self, count: int) -> None:
        offset = self.size_bytes - len(self._buffer)
        self.sender.send(chunk_fields(offset, bytes(self._buffer[:count])))
        del self._buffer[:count]
        self.chunks += 1


@contextmanager
def streamed_file(ctx: CommandContext, label: str, mtime: float, max_bytes: int,
                  command: str) -> Iterator[StreamedFile]:
    """A StreamedFile on the command's transfer stream, begun with `label` as its path.

    The block writes the content and calls `finish`; any error inside it tells the receiver
    why the transfer ends (or deletes the stream when the receiver is gone), then propagates.
    """
    chunk_bytes = ctx.settings.transfer_chunk_bytes
    sender = transfer_sender(ctx)
    sender.begin(begin_fields(max_bytes, chunk_bytes, label, None, mtime, streamed=True))
    with failures_told(sender, command):
        yield StreamedFile(sender, chunk_bytes, max_bytes, f"the {command} of {label}")


def transfer_sender(ctx: CommandContext) -> StreamSender:
    """The sender on the command's own transfer stream, with the agent's window and timeout."""
    return StreamSender(ctx.client, ctx.keys.xfer(ctx.command_id),
                        window_chunks=ctx.settings.transfer_window_chunks,
                        stall_timeout_s=ctx.settings.transfer_stall_timeout_s)


@contextmanager
def failures_told(sender: StreamSender, command: str) -> Iterator[None]:
    """Tell the receiver why a transfer ends when the block raises (a stalled receiver is gone:
    the stream is deleted instead), then let the error propagate."""
    try:
        yield
    except TransferStalledError:
        sender.abandon()
        raise
    except LiveResponseError as exc:
        sender.fail(exc.code, exc.message)
        raise
    except SoftTimeLimitExceeded:
        sender.fail("timeout", f"{command} ran past its time limit and was stopped")
        raise
    except CommandCancelled:
        sender.fail("cancelled", f"{command} was cancelled on the orchestrator's order")
        raise
    except Exception:
        sender.fail("agent_error", f"{command} failed on the agent with an internal error")
        raise
