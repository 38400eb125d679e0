"""Group commit: verified `.part` files become durable final files in batches.

`success` in the state DB means the file is on disk under its final name. One by one that
costs an fsync, a rename and a folder fsync per file (5 ms a small file here); in a batch
the fsyncs run side by side, the renames follow, each folder is synced once, and the
outcomes go to the state DB together. A batch closes at `max_files` or `max_wait`
seconds after its first file, so a kill or a power cut re-checks at most one batch: its
`.part` files are complete and the next run finds them so.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from tfbulk.pipeline.destination import PartFile, sync_folders

T = TypeVar("T")
MAX_FILES = 100
MAX_WAIT = 0.5
SYNC_THREADS = 4  # fsyncs at once: the file system journals them together


@dataclass(slots=True)
class Ready(Generic[T]):
    """A verified `.part` (still open) and what to report once it is final."""

    part: PartFile
    payload: T
    error: OSError | None = None


class Committer(Generic[T]):
    """One thread that commits batches; results go back to `committed` on the event loop.

    Submitting costs no thread wake-up: the thread is woken by a batch's first file (to
    start its clock), by a full batch, and by `drain`.
    """

    def __init__(
        self,
        committed: Callable[[list[Ready[T]]], None],
        *,
        sync: Callable[[list[PartFile]], dict[str, OSError]] = sync_folders,
        max_files: int = MAX_FILES,
        max_wait: float = MAX_WAIT,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._committed = committed
        self._sync = sync
        self._max_files = max_files
        self._max_wait = max_wait
        self._lock = threading.Condition()
        self._inbox: list[Ready[T]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._closing = False
        self._syncs = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="tfbulk-fsync")
        self._thread = threading.Thread(target=self._serve, name="tfbulk-commit", daemon=True)
        self._thread.start()

    def submit(self, item: Ready[T]) -> None:
        with self._lock:
            self._inbox.append(item)
            if len(self._inbox) in (1, self._max_files):
                self._lock.notify()

    async def drain(self) -> None:
        """Commit whatever was submitted before this call, now; return once reported."""
        done = self._loop.create_future()
        with self._lock:
            self._waiters.append(done)
            self._lock.notify()
        await done

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._lock.notify()
        self._thread.join()
        self._syncs.shutdown()

    def _serve(self) -> None:
        while True:
            batch, waiters, closing = self._next_batch()
            if batch:
                self._commit(batch)
                self._loop.call_soon_threadsafe(self._committed, batch)
            for waiter in waiters:
                self._loop.call_soon_threadsafe(_settle, waiter)
            if closing:
                return

    def _next_batch(self) -> tuple[list[Ready[T]], list[asyncio.Future[None]], bool]:
        """Wait for a batch that is full, old enough, or asked for by a drain."""
        with self._lock:
            while not (self._inbox or self._waiters or self._closing):
                self._lock.wait()
            deadline = time.monotonic() + self._max_wait
            while not (self._waiters or self._closing) and len(self._inbox) < self._max_files:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._lock.wait(remaining)
            batch, self._inbox = self._inbox[: self._max_files], self._inbox[self._max_files :]
            waiters = [] if self._inbox else self._waiters
            if waiters:
                self._waiters = []
            return batch, waiters, self._closing and not self._inbox

    def _commit(self, batch: list[Ready[T]]) -> None:
        """fsync and rename every file, fsync each folder once; errors stay per file."""
        shares = [batch[i::SYNC_THREADS] for i in range(min(SYNC_THREADS, len(batch)))]
        list(self._syncs.map(_publish_all, shares))
        published = [item.part for item in batch if item.error is None]
        failed_folders = self._sync(published)
        for item in batch:
            if item.error is None:
                item.error = failed_folders.get(item.part.folder)
            with contextlib.suppress(OSError):
                item.part.close()


def _publish_all(items: list[Ready[T]]) -> None:
    """One thread's share of a batch: several threads' fsyncs go into one journal commit."""
    for item in items:
        try:
            item.part.publish()
        except OSError as exc:
            item.error = exc


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
