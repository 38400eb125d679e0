"""Operator limits on a run: bandwidth (over the day), requests per second, a byte quota,
a free-space reserve.

The bandwidth limit is one token bucket for the whole process, shared by every transfer.
A transfer the bucket refuses is paused (libcurl stops reading its socket, so TCP slows
the sender) and resumed by one timer when its bytes are due: nothing sleeps or spins per
chunk. The decisions are pure functions of a clock, for the tests; `RunLimits` puts them
on the event loop.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from tfbulk.errors import DiskError
from tfbulk.pipeline.events import Transfer
from tfbulk.settings import Limits, Timetable, binary_size, minute_of_day

BURST_SECONDS = 0.25  # the bucket holds this much of the rate: short bursts stay small
LIMITED_RECEIVE_BUFFER = 16 * 1024  # libcurl's read size under a limit: a chunk is no jump
REREAD = 60.0  # seconds: the timetable is read again at least this often (clock steps, DST)


class Bandwidth:
    """A token bucket whose rate follows a timetable.

    `admit(n)` lets `n` bytes through while the bucket is not in debt (it may go into debt
    by one chunk), else says how long until it is out of debt. Over any window of T
    seconds at most `rate × (T + BURST_SECONDS)` plus one chunk pass.
    """

    def __init__(
        self,
        timetable: Timetable,
        clock: Callable[[], float] = time.monotonic,
        minute: Callable[[], float] = minute_of_day,
    ) -> None:
        self._timetable = timetable
        self._clock = clock
        self._minute = minute
        self._rate: float | None = None
        self._valid_until = float("-inf")
        self._tokens = 0.0
        self._stamp = clock()

    @property
    def rate(self) -> float | None:
        """Bytes per second now (None: unlimited), re-read from the timetable when due."""
        now = self._clock()
        if now >= self._valid_until:
            minute = self._minute()
            rate = self._timetable.rate_at(minute)
            if rate != self._rate:
                self._tokens = min(self._tokens, rate * BURST_SECONDS) if rate else 0.0
                self._stamp = now
            self._rate = rate
            self._valid_until = now + min(REREAD, self._timetable.next_change(minute) * 60)
        return self._rate

    def admit(self, size: int) -> float:
        """0 if `size` bytes may pass now (and are counted), else seconds to wait."""
        rate = self.rate
        if rate is None:
            return 0.0
        now = self._clock()
        self._tokens = min(rate * BURST_SECONDS, self._tokens + (now - self._stamp) * rate)
        self._stamp = now
        if self._tokens < 0:
            wait = -self._tokens / rate
            boundary = self._valid_until - now  # the timetable may change the rate first
            return min(wait, boundary) if boundary > 0 else wait
        self._tokens -= size
        return 0.0


class RequestRate:
    """Requests started at most `per_second` a second, paced evenly (1/N apart): no
    second holds more than N, and a WAF sees no burst at a second's start either."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = 1.0 / per_second
        self._clock = clock
        self._next = float("-inf")

    def admit(self) -> float:
        """0 if a request may start now (and is counted), else seconds to wait."""
        now = self._clock()
        if now < self._next:
            return self._next - now
        self._next = now + self._interval
        return 0.0


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on `path`'s file system."""
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def disk_shortfall(free: int, reserve: int, in_flight: int, wanted: int) -> int:
    """Bytes missing for a download of `wanted` bytes to leave `reserve` free, with
    `in_flight` bytes still to come for the downloads already running (0: it fits)."""
    return max(0, wanted + in_flight + reserve - free)


class RunLimits:
    """The limits of one run on its event loop: the sinks' bandwidth gate, the engine's
    request gate, and the byte count the quota is checked against."""

    def __init__(
        self, limits: Limits, root: Path | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = limits
        # An s3:// destination (no root) has no local disk for the reserve to guard.
        reserve = limits.min_free_space if root is not None else 0
        self.disk = DiskReserve(root or Path(), reserve)
        self._bandwidth = Bandwidth(limits.bwlimit, clock) if limits.bwlimit.limited else None
        self._requests = RequestRate(limits.max_rps, clock) if limits.max_rps else None
        self.received = 0

    @property
    def receive_buffer(self) -> int | None:
        """libcurl's read size for this run (None: the transport's default)."""
        return LIMITED_RECEIVE_BUFFER if self._bandwidth is not None else None

    def take(self, size: int, resume: Callable[[], None]) -> bool:
        """May `size` bytes be taken now? If not, `resume` is called once they may."""
        wait = self._bandwidth.admit(size) if self._bandwidth is not None else 0.0
        if wait:
            asyncio.get_running_loop().call_later(wait, resume)
            return False
        self.received += size
        return True

    async def request(self) -> bool:
        """Wait for a request slot under --max-rps; True if that meant waiting."""
        waited = False
        while self._requests is not None and (wait := self._requests.admit()):
            waited = True
            await asyncio.sleep(wait)
        return waited

    @property
    def quota_reached(self) -> bool:
        quota = self.settings.max_transfer
        return quota is not None and self.received >= quota


class DiskReserve:
    """--min-free-space: a download starts only if, with what the running ones still have
    to write, it leaves the reserve free. Unknown sizes count as this run's average."""

    def __init__(self, root: Path, reserve: int, free: Callable[[Path], int] = free_bytes):
        self._root = root
        self._reserve = reserve
        self._free = free
        self._running: dict[int, Transfer] = {}
        self._sizes = 0
        self._count = 0

    def running(self, transfer: Transfer) -> None:
        self._running[transfer.segment_id] = transfer

    def ended(self, transfer: Transfer) -> None:
        self._running.pop(transfer.segment_id, None)

    def learn(self, size: int) -> None:
        """A finished body's size, for the average that stands in for unknown sizes."""
        self._sizes += size
        self._count += 1

    @property
    def average(self) -> int:
        return self._sizes // self._count if self._count else 0

    def check(self, segment_id: int, wanted: int | None) -> None:
        """Raise DiskError unless `wanted` more bytes (None: unknown) leave the reserve."""
        if not self._reserve:
            return
        need = self.average if wanted is None else wanted
        others = sum(
            self._still_to_come(t) for t in self._running.values() if t.segment_id != segment_id
        )
        free = self._free(self._root)
        short = disk_shortfall(free, self._reserve, others, need)
        if short:
            raise DiskError(
                f"not enough free space on {self._root}: {binary_size(free)} free; the next "
                f"download needs {binary_size(need)}, running ones {binary_size(others)} more, "
                f"and --min-free-space keeps {binary_size(self._reserve)}; free "
                f"{binary_size(short)} more (or lower --min-free-space)"
            )

    def _still_to_come(self, transfer: Transfer) -> int:
        size = transfer.size if transfer.size is not None else self.average
        return max(0, size - transfer.received)
