"""What the engine tells its observers. Observers (displays, logs) only read these.

Byte progress is not an event: a `Transfer` is a small live record the engine updates per
chunk and displays sample at their own pace, so a slow terminal never slows a download.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from tfbulk.settings import Limits


@dataclass(slots=True)
class Transfer:
    """One download in flight: written by the engine, read by displays."""

    segment_id: int
    course_id: int
    title: str | None
    started: float
    attempt: int
    size: int | None = None
    received: int = 0
    resumed_from: int = 0
    status: int | None = None  # the response's HTTP status, once its head has arrived


@dataclass(frozen=True, slots=True)
class CourseTotals:
    """A course's counts when the run starts (displays count on from there)."""

    course_id: int
    title: str | None
    total: int
    done: int
    failed: int


@dataclass(frozen=True, slots=True)
class PlanProgress:
    """Planning a big snapshot takes seconds: how many segments are planned so far."""

    planned: int


@dataclass(frozen=True, slots=True)
class RunStarted:
    total: int
    done: int
    failed: int
    pending: int
    concurrency: int
    dest: str
    scope: str
    courses: tuple[CourseTotals, ...] = field(default=())
    limits: Limits = field(default_factory=Limits)
    statuses: Mapping[str, int] = field(default_factory=dict)  # the scope's counts by status
    worker: str | None = None  # this worker's id on a shared PostgreSQL queue
    state: str = ""  # shown at start when it is not under --dest (an s3:// destination)


@dataclass(frozen=True, slots=True)
class SegmentStarted:
    transfer: Transfer


@dataclass(frozen=True, slots=True)
class SegmentRetrying:
    segment_id: int
    course_id: int
    attempt: int
    reason: str
    delay: float


@dataclass(frozen=True, slots=True)
class SegmentFinished:
    """A segment reached `success` (downloaded) or `skipped` (a valid file was there)."""

    segment_id: int
    course_id: int
    status: str
    size: int
    seconds: float
    downloaded: int
    path: str = ""  # the file, relative to the destination folder


@dataclass(frozen=True, slots=True)
class SegmentFailed:
    segment_id: int
    course_id: int
    attempts: int
    reason: str


@dataclass(frozen=True, slots=True)
class SegmentParked:
    """An in-flight download was stopped (signal, --max-time) and put back to pending."""

    segment_id: int
    course_id: int


@dataclass(frozen=True, slots=True)
class RunStopping:
    reason: str


@dataclass(frozen=True, slots=True)
class RunFinished:
    exit_code: int
    elapsed: float
    downloaded: int
    totals: dict[str, int]


Event = (
    PlanProgress
    | RunStarted
    | SegmentStarted
    | SegmentRetrying
    | SegmentFinished
    | SegmentFailed
    | SegmentParked
    | RunStopping
    | RunFinished
)


class Observer(Protocol):
    """Anything that wants to hear about the run; it must return quickly."""

    def __call__(self, event: Event) -> None: ...


class Broadcast:
    """Fans one event out to several observers."""

    def __init__(self, observers: list[Observer]) -> None:
        self._observers = observers

    def __call__(self, event: Event) -> None:
        for observer in self._observers:
            observer(event)
