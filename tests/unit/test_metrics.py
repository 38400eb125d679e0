"""RunMetrics' small decisions: what counts as a retry, a request, a segment's status."""

from __future__ import annotations

from prometheus_client import generate_latest

from tfbulk.observe.metrics import NO_RESPONSE, RunMetrics, registry
from tfbulk.pipeline.events import (
    RunFinished,
    RunStarted,
    SegmentFailed,
    SegmentFinished,
    SegmentRetrying,
    SegmentStarted,
    Transfer,
)

STATUSES = {"pending": 3, "processing": 0, "success": 1, "skipped": 0, "failed": 1}


def started(worker: str | None = None) -> RunStarted:
    return RunStarted(5, 1, 1, 3, 2, "/d", "all courses", statuses=STATUSES, worker=worker)


def attempt(segment_id: int, status: int | None, received: int = 0) -> SegmentStarted:
    transfer = Transfer(segment_id, 7, None, 0.0, 1)
    transfer.status, transfer.received = status, received
    return SegmentStarted(transfer)


def test_counts_move_on_from_the_start_and_end_exact() -> None:
    metrics = RunMetrics(clock=lambda: 100.0)
    metrics(started())
    metrics(attempt(1, 200, received=10))
    metrics(SegmentFinished(1, 7, "success", 10, 0.1, 10))
    metrics(attempt(2, 200, received=4))
    sample = metrics.sample()
    assert sample.segments == {
        "pending": 1, "processing": 1, "success": 2, "skipped": 0, "failed": 1
    }  # fmt: skip
    assert sample.downloaded == 14
    assert sample.in_flight == 1
    assert sample.last_success == 100.0
    totals = {"total": 5, "success": 4, "skipped": 0, "failed": 1, "pending": 0, "processing": 0}
    metrics(RunFinished(0, 1.0, 99, totals))
    sample = metrics.sample()
    assert sample.segments == {s: totals[s] for s in STATUSES}
    assert (sample.downloaded, sample.in_flight, sample.exit_code) == (99, 0, 0)


def test_every_attempt_after_the_first_is_a_retry_and_a_request() -> None:
    metrics = RunMetrics()
    metrics(started())
    metrics(attempt(1, None))  # connection refused
    metrics(attempt(1, 503))  # retried at once, in its slot
    metrics(SegmentRetrying(1, 7, 2, "HTTP 503", 1.0))  # retried later
    metrics(attempt(1, 404))
    metrics(SegmentFailed(1, 7, 3, "HTTP 404"))
    sample = metrics.sample()
    assert sample.retries == 2
    assert sample.requests == {NO_RESPONSE: 1, "503": 1, "404": 1}


def test_a_worker_labels_every_metric() -> None:
    metrics = RunMetrics()
    metrics(started(worker="host:42:abc"))
    text = generate_latest(registry(metrics)).decode()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines and all('worker="host:42:abc"' in line for line in lines)
    assert 'tfbulk_segments{status="pending",worker="host:42:abc"} 3.0' in text
