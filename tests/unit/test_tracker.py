"""RunTracker: counts, course progress, errors and rates from engine events."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tfbulk.display.tracker import ERRORS_KEPT, CourseProgress, RunTracker
from tfbulk.pipeline.events import (
    CourseTotals,
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


def list_clock(ticks: list[float]) -> Callable[[], float]:
    """A clock that reads the last value of `ticks`; append to move time on."""
    return lambda: ticks[-1]


def started(total: int = 10, done: int = 2, failed: int = 1) -> RunStarted:
    return RunStarted(
        total=total,
        done=done,
        failed=failed,
        pending=total - done - failed,
        concurrency=3,
        dest="/tmp/dl",
        scope="all courses",
        courses=(
            CourseTotals(1, "Blues Rhythm 101", 6, done, failed),
            CourseTotals(2, "Jazz Soloing 102", total - 6, 0, 0),
        ),
    )


def transfer(segment_id: int, course_id: int, started_at: float = 0.0, **kw: int) -> Transfer:
    return Transfer(segment_id, course_id, f"Lesson {segment_id}", started_at, 1, **kw)


@pytest.fixture
def ticks() -> list[float]:
    return [100.0]


@pytest.fixture
def tracker(ticks: list[float]) -> RunTracker:
    tracker = RunTracker(clock=list_clock(ticks))
    tracker(started())
    return tracker


def test_before_run_started() -> None:
    snap = RunTracker(clock=list_clock([5.0])).snapshot()
    assert (snap.total, snap.success, snap.failed, snap.pending, snap.elapsed) == (0, 0, 0, 0, 0.0)
    assert snap.eta is None
    assert snap.courses == []


def test_run_started_counts(tracker: RunTracker) -> None:
    snap = tracker.snapshot()
    assert (snap.total, snap.success, snap.skipped, snap.failed) == (10, 2, 0, 1)
    assert (snap.processing, snap.pending, snap.retries, snap.bytes) == (0, 7, 0, 0)
    assert snap.done == 3
    assert snap.courses == [
        CourseProgress(1, "Blues Rhythm 101", 6, done=2, failed=1),
        CourseProgress(2, "Jazz Soloing 102", 4),
    ]
    assert snap.errors == []
    assert snap.stopping is None


def test_segment_lifecycle(tracker: RunTracker, ticks: list[float]) -> None:
    first = transfer(101, 1, started_at=100.5, size=4000)
    second = transfer(201, 2, started_at=100.2)
    tracker(SegmentStarted(first))
    tracker(SegmentStarted(second))
    snap = tracker.snapshot()
    assert (snap.processing, snap.pending) == (2, 5)
    assert [t.segment_id for t in snap.transfers] == [201, 101]  # oldest first
    assert [(c.course_id, c.active) for c in snap.courses] == [(1, 1), (2, 1)]

    first.received = 4000
    tracker(SegmentFinished(101, 1, "success", 4000, 1.0, 4000))
    tracker(SegmentFinished(102, 1, "skipped", 2048, 0.0, 0))  # never started a transfer
    snap = tracker.snapshot()
    assert (snap.success, snap.skipped, snap.failed) == (3, 1, 1)
    assert (snap.processing, snap.pending) == (1, 4)
    assert snap.bytes == 4000
    assert [(c.course_id, c.done, c.failed, c.active) for c in snap.courses] == [
        (1, 4, 1, 0),
        (2, 0, 0, 1),
    ]

    second.received = 700
    tracker(SegmentRetrying(201, 2, 1, "HTTP 503 Service Unavailable", 2.0))
    snap = tracker.snapshot()
    assert (snap.processing, snap.pending, snap.retries) == (0, 5, 1)
    assert snap.bytes == 4700  # bytes of an abandoned attempt stay counted
    assert snap.errors == [(201, 2, "HTTP 503 Service Unavailable")]

    tracker(SegmentStarted(transfer(201, 2, started_at=103.0)))
    tracker(SegmentFailed(201, 2, 2, "HTTP 404 Not Found"))
    snap = tracker.snapshot()
    assert (snap.success, snap.skipped, snap.failed, snap.processing, snap.pending) == (
        3,
        1,
        2,
        0,
        4,
    )
    assert snap.done == 6
    assert snap.errors == [(201, 2, "HTTP 404 Not Found")]  # the segment's latest error
    assert [(c.course_id, c.failed) for c in snap.courses] == [(1, 1), (2, 1)]


def test_finished_courses_stay_and_know_when_they_finished(
    tracker: RunTracker, ticks: list[float]
) -> None:
    ticks.append(103.0)
    for sid in (103, 104, 105):
        tracker(SegmentFinished(sid, 1, "success", 10, 0.1, 10))
    snap = tracker.snapshot()
    assert [(c.course_id, c.finished, c.finished_at) for c in snap.courses] == [
        (1, True, 103.0),
        (2, False, None),
    ]
    assert snap.success == 5


def test_errors_of_segments_that_later_succeed_are_recovered(tracker: RunTracker) -> None:
    tracker(SegmentRetrying(201, 2, 1, "HTTP 503 Service Unavailable", 1.0))
    tracker(SegmentRetrying(201, 2, 2, "HTTP 429 Too Many Requests", 1.0))
    tracker(SegmentRetrying(202, 2, 1, "HTTP 503 Service Unavailable", 1.0))
    assert tracker.snapshot().errors == [
        (201, 2, "HTTP 429 Too Many Requests"),  # one line per segment: its latest error
        (202, 2, "HTTP 503 Service Unavailable"),
    ]
    tracker(SegmentFinished(201, 2, "success", 10, 0.1, 10))
    snap = tracker.snapshot()
    assert snap.errors == [(202, 2, "HTTP 503 Service Unavailable")]
    assert snap.recovered == 1
    tracker(SegmentFinished(203, 2, "success", 10, 0.1, 10))  # never failed: not recovered
    assert tracker.snapshot().recovered == 1


def test_eta_from_bytes_before_any_file_finishes(tracker: RunTracker, ticks: list[float]) -> None:
    """7 segments to go, two in flight of 4,000 bytes each at 1,000 bytes/s: the others
    are guessed at that size, so 6 × 4,000 + 2 × 4,000 − 2,000 bytes remain."""
    moving = [transfer(101, 1, size=4000), transfer(201, 2, size=4000)]
    for t in moving:
        tracker(SegmentStarted(t))
    tracker.snapshot()
    ticks.append(102.0)
    moving[0].received = 2000
    snap = tracker.snapshot()
    assert (snap.done, snap.rate_files, snap.rate_bytes) == (3, 0.0, 1000.0)
    assert snap.eta == (5 * 4000 + 2 * 4000 - 2000) / 1000.0


def test_planning_progress_before_the_run_starts() -> None:
    tracker = RunTracker()
    tracker(PlanProgress(4000))
    assert tracker.snapshot().planned == 4000


def test_parked_goes_back_to_the_queue(tracker: RunTracker) -> None:
    moving = transfer(101, 1, resumed_from=1000)
    tracker(SegmentStarted(moving))
    moving.received = 1500
    assert tracker.snapshot().bytes == 500  # only bytes moved this run
    tracker(SegmentParked(101, 1))
    snap = tracker.snapshot()
    assert (snap.processing, snap.pending, snap.bytes) == (0, 7, 500)
    assert snap.courses[0].active == 0


def test_stopping_reason(tracker: RunTracker) -> None:
    tracker(RunStopping("interrupted"))
    assert tracker.snapshot().stopping == "interrupted"


def test_only_last_errors_are_kept(tracker: RunTracker) -> None:
    for sid in range(1, 9):
        tracker(SegmentFailed(sid, 2, 5, f"error {sid}"))
    snap = tracker.snapshot()
    assert len(snap.errors) == ERRORS_KEPT == 5
    assert snap.errors == [(sid, 2, f"error {sid}") for sid in range(4, 9)]
    assert snap.failed == 9


def test_unknown_course_is_tracked(tracker: RunTracker) -> None:
    tracker(SegmentStarted(transfer(901, 9)))
    snap = tracker.snapshot()
    assert CourseProgress(9, None, 0, active=1) in snap.courses


def test_rates_and_eta_with_fake_clock(tracker: RunTracker, ticks: list[float]) -> None:
    moving = transfer(101, 1, started_at=100.0)
    tracker(SegmentStarted(moving))
    snap = tracker.snapshot()  # t=100: the first sample, no span yet
    assert (snap.rate_bytes, snap.rate_files, snap.eta, snap.elapsed) == (0.0, 0.0, None, 0.0)

    ticks.append(102.0)
    moving.received = 2000
    snap = tracker.snapshot()
    assert snap.elapsed == 2.0
    assert snap.rate_bytes == 1000.0
    assert snap.rate_files == 0.0
    assert snap.eta is None

    ticks.append(104.0)
    moving.received = 4000
    tracker(SegmentFinished(101, 1, "success", 4000, 4.0, 4000))
    snap = tracker.snapshot()
    assert snap.rate_bytes == 1000.0  # 4000 bytes over 4 s
    assert snap.rate_files == 0.25  # 1 file over 4 s
    assert snap.pending == 6
    assert snap.eta == 6 / 0.25


def test_rate_window_forgets_old_samples(tracker: RunTracker, ticks: list[float]) -> None:
    moving = transfer(101, 1)
    tracker(SegmentStarted(moving))
    for now, received in [(100.0, 0), (102.0, 10_000), (104.0, 12_000), (120.0, 20_000)]:
        ticks.append(now)
        moving.received = received
        snap = tracker.snapshot()
    # At t=120 the samples from t=100 and t=102 are older than the 10 s window; the
    # oldest sample kept (t=104) still anchors the rate so it never has a zero span.
    assert snap.rate_bytes == (20_000 - 12_000) / 16
    ticks.append(121.0)
    moving.received = 20_500
    snap = tracker.snapshot()
    assert snap.rate_bytes == 500.0  # only t=120 and t=121 are left


def test_rate_needs_a_minimum_span(tracker: RunTracker, ticks: list[float]) -> None:
    moving = transfer(101, 1)
    tracker(SegmentStarted(moving))
    tracker.snapshot()
    ticks.append(100.1)
    moving.received = 1_000_000
    assert tracker.snapshot().rate_bytes == 0.0


def test_snapshot_is_a_copy(tracker: RunTracker) -> None:
    snap = tracker.snapshot()
    assert snap.courses[0].done == 2
    tracker(SegmentFinished(103, 1, "success", 10, 0.1, 10))
    assert snap.courses[0].done == 2
