"""Hash and write `.part` files on a few threads, so the event loop only receives.

MD5, write() and posix_fadvise() release the GIL: a batch handed to a writer thread is
digested and written on the other core while the loop keeps feeding libcurl. Each `.part`
sticks to one thread, so its batches land in order; files spread over the threads, so
several large downloads hash in parallel. What one transfer may have queued is bounded:
over the bound it asks its transfer to pause, and the thread wakes it once it catches up.
Small bodies go the same way: their MD5 on the loop measured slower than two hand-offs
(docs/performance.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tfbulk.pipeline.destination import PartFile

BATCH = 256 * 1024  # bytes received before a hand-off to the writer thread
BACKLOG = 2 * BATCH  # queued and not yet written: over this the transfer pauses
INTERVAL = 0.5  # seconds: a slow transfer still reaches the disk (and a resume) this often
WRITEBACK_EVERY = 8 << 20  # bytes written before the kernel is asked to start writeback
HEAD_SIZE = 16

_Work = tuple["PartWriter", list[bytes], "asyncio.Future[None] | None"]


class Digest(Protocol):
    """What a writer feeds: hashlib's MD5, or several digests fed together."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


class DiskWriter:
    """The writer threads of one run, and a tick that hands off what stalled transfers hold
    (a body that stops mid-batch still reaches the disk, and a resume, within INTERVAL)."""

    def __init__(self, threads: int = 2) -> None:
        self._open: set[PartWriter] = set()
        self._tick: asyncio.TimerHandle | None = None
        self._queues: list[queue.SimpleQueue[_Work | None]] = []
        self._threads: list[threading.Thread] = []
        for number in range(threads):
            work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
            thread = threading.Thread(
                target=_serve, args=(work,), name=f"tfbulk-writer-{number}", daemon=True
            )
            thread.start()
            self._queues.append(work)
            self._threads.append(thread)
        self._next = itertools.cycle(self._queues)

    def open(
        self, part: PartFile, offset: int, digest: hashlib._Hash, resume: Callable[[], None]
    ) -> PartWriter:
        """A writer for `part`, positioned at `offset`, its MD5 already fed the bytes before it.

        `resume` wakes the paused transfer; it is called on the event loop thread."""
        return self._writer(part.fd, offset, digest, resume, writeback=True)

    def spool(self, fd: int, digest: Digest, resume: Callable[[], None]) -> PartWriter:
        """A writer for a scratch file read back within seconds (an S3 part): no writeback
        is asked for, so a part uploaded and truncated in time never reaches the disk."""
        return self._writer(fd, 0, digest, resume, writeback=False)

    def _writer(
        self,
        fd: int,
        offset: int,
        digest: Digest,
        resume: Callable[[], None],
        *,
        writeback: bool,
    ) -> PartWriter:
        loop = asyncio.get_running_loop()
        writer = PartWriter(fd, offset, digest, next(self._next), loop, resume, self._open)
        writer.writeback = writeback
        self._open.add(writer)
        if self._tick is None:
            self._tick = loop.call_later(INTERVAL, self._hand_off_stalled, loop)
        return writer

    def _hand_off_stalled(self, loop: asyncio.AbstractEventLoop) -> None:
        self._tick = None
        now = time.monotonic()
        for writer in list(self._open):
            writer.hand_off_if_stale(now)
        if self._open:
            self._tick = loop.call_later(INTERVAL, self._hand_off_stalled, loop)

    def close(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
        for work in self._queues:
            work.put(None)
        for thread in self._threads:
            thread.join()


def _serve(work: queue.SimpleQueue[_Work | None]) -> None:
    while (item := work.get()) is not None:
        writer, chunks, done = item
        writer.write_batch(chunks)
        if done is not None:
            writer.loop.call_soon_threadsafe(_settle, done)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class PartWriter:
    """One `.part` being written. `take` runs on the loop; `write_batch` on the thread."""

    def __init__(
        self,
        fd: int,
        offset: int,
        digest: Digest,
        work: queue.SimpleQueue[_Work | None],
        loop: asyncio.AbstractEventLoop,
        resume: Callable[[], None],
        registry: set[PartWriter],
    ) -> None:
        self.fd = fd
        self._registry = registry
        self.loop = loop
        self.digest = digest
        self.head = b""
        self.error: OSError | None = None
        self._work = work
        self._resume = resume
        self._batch: list[bytes] = []
        self._pending = 0
        self._handed_at = time.monotonic()
        # Two counters with one writer each (loop, thread): their difference is the backlog.
        self._queued = 0
        self._written = 0
        self._paused = False
        self._end = offset
        self._advised = offset
        self.writeback = True  # ask the kernel to write back every WRITEBACK_EVERY bytes

    @property
    def md5(self) -> str:
        """The MD5 of everything in the `.part` (after `finish`)."""
        return self.digest.hexdigest()

    # -- the loop's side ---------------------------------------------------------------

    def take(self, chunk: bytes) -> bool:
        """Accept a piece of body, or say False (not taken) while the thread is behind."""
        if self.error is not None:
            raise self.error
        if self._queued - self._written >= BACKLOG:
            self._paused = True
            if self._queued - self._written >= BACKLOG:  # the thread may just have caught up
                return False
            self._paused = False
        if len(self.head) < HEAD_SIZE:
            self.head += chunk[: HEAD_SIZE - len(self.head)]
        self._batch.append(chunk)
        self._pending += len(chunk)
        if self._pending >= BATCH or time.monotonic() - self._handed_at >= INTERVAL:
            self._hand_off(None)
        return True

    def hand_off_if_stale(self, now: float) -> None:
        if self._pending and now - self._handed_at >= INTERVAL:
            self._hand_off(None)

    async def finish(self) -> None:
        """Everything taken is written and digested (or the write error is raised)."""
        self._registry.discard(self)
        done = self.loop.create_future()
        self._hand_off(done)
        await done
        if self.error is not None:
            raise self.error

    def _hand_off(self, done: asyncio.Future[None] | None) -> None:
        batch, self._batch = self._batch, []
        self._queued += self._pending
        self._pending = 0
        self._handed_at = time.monotonic()
        self._work.put((self, batch, done))

    # -- the thread's side -------------------------------------------------------------

    def write_batch(self, chunks: list[bytes]) -> None:
        size = sum(len(chunk) for chunk in chunks)
        try:
            if self.error is None and chunks:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                self.digest.update(data)
                _write_all(self.fd, data)
                self._end += size
                if self.writeback and self._end - self._advised >= WRITEBACK_EVERY:
                    self._start_writeback()
        except OSError as exc:
            self.error = exc
        finally:
            self._written += size
            if self._paused and self._queued - self._written < BACKLOG:
                self._paused = False
                self.loop.call_soon_threadsafe(self._resume)

    def _start_writeback(self) -> None:
        """Ask the kernel to start writing what we have so far, without waiting for it.

        The commit's fsync must put the whole file on disk before the rename; left alone,
        the kernel would hold a 256 MiB body dirty in memory until then and write it all at
        once while the download sits idle. Started early, the disk works while the network
        does (POSIX_FADV_DONTNEED also keeps a bulk download from crowding the page cache).
        """
        if hasattr(os, "posix_fadvise"):
            length = self._end - self._advised
            os.posix_fadvise(self.fd, self._advised, length, os.POSIX_FADV_DONTNEED)
        self._advised = self._end


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
