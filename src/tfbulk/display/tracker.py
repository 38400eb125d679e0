"""The run as displays see it: counts, courses, transfers in flight, recent errors, speed.

The tracker is an observer: the engine's events update it on the event loop, and views
read consistent copies of it from their own threads (under a lock held only briefly).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from tfbulk.pipeline.events import (
    Event,
    PlanProgress,
    RunStarted,
    RunStopping,
    SegmentFailed,
    SegmentFinished,
    SegmentParked,
    SegmentRetrying,
    SegmentStarted,
    Transfer,
)
from tfbulk.settings import minute_of_day
from tfbulk.state import Status

RATE_WINDOW = 10.0
ERRORS_KEPT = 5


@dataclass
class CourseProgress:
    course_id: int
    title: str | None
    total: int
    done: int = 0
    failed: int = 0
    active: int = 0
    finished_at: float | None = None  # when it finished during this run

    @property
    def finished(self) -> bool:
        return self.done + self.failed >= self.total


@dataclass(frozen=True)
class Progress:
    """A consistent copy of the tracker for one frame or one stats line."""

    total: int
    success: int
    skipped: int
    failed: int
    processing: int
    pending: int
    retries: int
    bytes: int
    elapsed: float
    rate_bytes: float
    rate_files: float
    eta: float | None
    transfers: list[Transfer]
    courses: list[CourseProgress]
    errors: list[tuple[int, int, str]]
    stopping: str | None
    recovered: int = 0
    planned: int = 0

    @property
    def done(self) -> int:
        return self.success + self.skipped + self.failed


@dataclass
class RunTracker:
    clock: Callable[[], float] = time.monotonic
    minute: Callable[[], float] = minute_of_day
    started: RunStarted | None = None
    start_time: float = 0.0
    success: int = 0
    skipped: int = 0
    failed: int = 0
    retries: int = 0
    recovered: int = 0
    planned: int = 0
    finished_bytes: int = 0
    sized: tuple[int, int] = (0, 0)  # (files, bytes) finished: the average file size
    stopping: str | None = None
    courses: dict[int, CourseProgress] = field(default_factory=dict)
    transfers: dict[int, Transfer] = field(default_factory=dict)
    errors: deque[tuple[int, int, str]] = field(default_factory=lambda: deque(maxlen=ERRORS_KEPT))
    _samples: deque[tuple[float, int, int]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._apply(event)

    def _apply(self, event: Event) -> None:
        match event:
            case PlanProgress(planned):
                self.planned = planned
            case RunStarted():
                self.started, self.start_time = event, self.clock()
                self._samples.clear()  # frames drawn while planning moved nothing
                self._samples.append((self.start_time, 0, 0))  # first rates: since the start
                for course in event.courses:
                    self.courses[course.course_id] = CourseProgress(
                        course.course_id, course.title, course.total, course.done, course.failed
                    )
            case SegmentStarted(transfer):
                if transfer.segment_id in self.transfers:  # retried at once: same slot
                    self._end(transfer.segment_id, transfer.course_id)
                self.transfers[transfer.segment_id] = transfer
                self._course(transfer.course_id).active += 1
            case SegmentFinished():
                self._end(event.segment_id, event.course_id)
                if event.status == Status.SUCCESS:
                    self.success += 1
                else:
                    self.skipped += 1
                self.sized = (self.sized[0] + 1, self.sized[1] + event.size)
                self._course(event.course_id).done += 1
                self._finished_course(event.course_id)
                self._recovered(event.segment_id)
            case SegmentFailed():
                self._end(event.segment_id, event.course_id)
                self.failed += 1
                self._course(event.course_id).failed += 1
                self._finished_course(event.course_id)
                self._error(event.segment_id, event.course_id, event.reason)
            case SegmentRetrying():
                self._end(event.segment_id, event.course_id)
                self.retries += 1
                self._error(event.segment_id, event.course_id, event.reason)
            case SegmentParked():
                self._end(event.segment_id, event.course_id)
            case RunStopping(reason):
                self.stopping = reason

    def _error(self, segment_id: int, course_id: int, reason: str) -> None:
        """Keep one line per segment: its latest error."""
        self._forget(segment_id)
        self.errors.append((segment_id, course_id, reason))

    def _recovered(self, segment_id: int) -> None:
        """A segment that failed an attempt and then succeeded is no longer an error."""
        if self._forget(segment_id):
            self.recovered += 1

    def _forget(self, segment_id: int) -> bool:
        kept = [e for e in self.errors if e[0] != segment_id]
        if len(kept) == len(self.errors):
            return False
        self.errors = deque(kept, maxlen=ERRORS_KEPT)
        return True

    def _finished_course(self, course_id: int) -> None:
        course = self._course(course_id)
        if course.finished and course.finished_at is None:
            course.finished_at = self.clock()

    def _course(self, course_id: int) -> CourseProgress:
        if course_id not in self.courses:
            self.courses[course_id] = CourseProgress(course_id, None, 0)
        return self.courses[course_id]

    def _end(self, segment_id: int, course_id: int) -> None:
        """A transfer left the pool; the bytes it moved stay counted."""
        transfer = self.transfers.pop(segment_id, None)
        if transfer is not None:
            course = self._course(course_id)
            course.active = max(0, course.active - 1)
            self.finished_bytes += max(0, transfer.received - transfer.resumed_from)

    def snapshot(self) -> Progress:
        """Copy the state and update the smoothed rates (call from one view only)."""
        with self._lock:
            now = self.clock()
            transfers = list(self.transfers.values())
            in_flight = sum(t.received - t.resumed_from for t in transfers)
            moved = self.finished_bytes + in_flight
            done_now = self.success + self.skipped + self.failed
            rate_bytes, rate_files = self._rates(now, moved, done_now)
            started = self.started
            total = started.total if started else 0
            already = (started.done + started.failed) if started else 0
            remaining = max(0, total - already - done_now)
            return Progress(
                total=total,
                success=self.success + (started.done if started else 0),
                skipped=self.skipped,
                failed=self.failed + (started.failed if started else 0),
                processing=len(transfers),
                pending=max(0, remaining - len(transfers)),
                retries=self.retries,
                bytes=moved,
                elapsed=now - self.start_time if started else 0.0,
                rate_bytes=rate_bytes,
                rate_files=rate_files,
                eta=self._eta(remaining, transfers, rate_bytes, rate_files),
                transfers=sorted(transfers, key=lambda t: t.started),
                courses=[replace(c) for c in self.courses.values()],
                errors=list(self.errors),
                stopping=self.stopping,
                recovered=self.recovered,
                planned=self.planned,
            )

    def _eta(
        self, remaining: int, transfers: list[Transfer], rate_bytes: float, rate_files: float
    ) -> float | None:
        """Seconds left: from bytes as soon as they flow, else from files per second; under
        a --bwlimit no sooner than the bytes left take at the timetable's rates."""
        left = self._bytes_left(remaining, transfers)
        if rate_bytes > 0 and left is not None:
            eta: float | None = left / rate_bytes
        else:
            eta = remaining / rate_files if rate_files > 0 else None
        timetable = self.started.limits.bwlimit if self.started else None
        if eta is None or left is None or timetable is None or not timetable.limited:
            return eta
        limited = timetable.seconds_for(left, self.minute(), rate_bytes)
        return eta if limited is None else max(eta, limited)

    def _bytes_left(self, remaining: int, transfers: list[Transfer]) -> float | None:
        """What is left of the transfers in flight, plus the files not started at the
        average size seen so far; None before any size is known."""
        files, size = self.sized[0], self.sized[1]
        for t in transfers:
            if t.size:
                files, size = files + 1, size + t.size
        if not files:
            return None
        in_flight = sum(max(0, (t.size or size // files) - t.received) for t in transfers)
        return in_flight + max(0, remaining - len(transfers)) * (size / files)

    def _rates(self, now: float, moved: int, done: int) -> tuple[float, float]:
        """Bytes/s and files/s over the last RATE_WINDOW seconds."""
        self._samples.append((now, moved, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW:
            self._samples.popleft()
        first_time, first_bytes, first_done = self._samples[0]
        span = now - first_time
        if span <= 0.2:
            return 0.0, 0.0
        return (moved - first_bytes) / span, (done - first_done) / span
