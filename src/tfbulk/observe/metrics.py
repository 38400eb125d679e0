"""The run's numbers as Prometheus metrics: kept from engine events, exposed by a collector.

`RunMetrics` is an observer (updated on the event loop under a short lock); `collector()`
turns a consistent copy into metric families whenever the file is written or /metrics is
scraped. The segment counts start from the state DB's at the start of the run and count
this process's outcomes on from there; at the end they are the state DB's again, exactly.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from tfbulk.pipeline.events import (
    Event,
    RunFinished,
    RunStarted,
    SegmentFailed,
    SegmentFinished,
    SegmentParked,
    SegmentRetrying,
    SegmentStarted,
    Transfer,
)
from tfbulk.state import STATUSES, Status

RATE_WINDOW = 10.0  # seconds of history behind tfbulk_bytes_per_second
NO_RESPONSE = "none"  # the `code` of an attempt that got no HTTP response (network error)

Family = CounterMetricFamily | GaugeMetricFamily


@dataclass(frozen=True)
class Sample:
    """A consistent copy of the metrics at one moment."""

    worker: str | None
    segments: dict[str, int]
    downloaded: int
    requests: dict[str, int]
    retries: int
    in_flight: int
    rate: float
    run_start: float | None
    last_success: float | None
    exit_code: int | None
    run_end: float | None


@dataclass
class RunMetrics:
    """Observer: what the metrics report, from the events alone."""

    clock: Callable[[], float] = time.time
    started: RunStarted | None = None
    run_start: float | None = None
    finished: RunFinished | None = None
    run_end: float | None = None
    last_success: float | None = None
    outcomes: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    ended_bytes: int = 0
    transfers: dict[int, Transfer] = field(default_factory=dict)
    _samples: deque[tuple[float, int]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._apply(event)

    def _apply(self, event: Event) -> None:
        match event:
            case RunStarted():
                self.started, self.run_start = event, self.clock()
            case SegmentStarted(transfer):
                if transfer.segment_id in self.transfers:  # an immediate retry
                    self.retries += 1
                    self._end(transfer.segment_id)
                self.transfers[transfer.segment_id] = transfer
            case SegmentRetrying():
                self.retries += 1
                self._end(event.segment_id)
            case SegmentFinished():
                self._end(event.segment_id)
                self.outcomes[event.status] += 1
                if event.status == Status.SUCCESS:
                    self.last_success = self.clock()
            case SegmentFailed():
                self._end(event.segment_id)
                self.outcomes[Status.FAILED] += 1
            case SegmentParked():
                self._end(event.segment_id)
            case RunFinished():
                self.finished, self.run_end = event, self.clock()

    def _end(self, segment_id: int) -> None:
        """An attempt is over: count its response and keep the bytes it moved."""
        transfer = self.transfers.pop(segment_id, None)
        if transfer is not None:
            code = NO_RESPONSE if transfer.status is None else str(transfer.status)
            self.requests[code] += 1
            self.ended_bytes += max(0, transfer.received - transfer.resumed_from)

    def sample(self) -> Sample:
        """A copy for one exposition; also advances the bytes/s window."""
        with self._lock:
            now = time.monotonic()
            moved = self.ended_bytes + sum(
                t.received - t.resumed_from for t in self.transfers.values()
            )
            rate = self._rate(now, moved)
            requests = Counter(self.requests)
            for transfer in self.transfers.values():  # answered, still receiving
                if transfer.status is not None:
                    requests[str(transfer.status)] += 1
            finished = self.finished
            return Sample(
                worker=self.started.worker if self.started else None,
                segments=self._segments(),
                downloaded=finished.downloaded if finished else moved,
                requests=dict(requests),
                retries=self.retries,
                in_flight=0 if finished else len(self.transfers),
                rate=0.0 if finished else rate,
                run_start=self.run_start,
                last_success=self.last_success,
                exit_code=finished.exit_code if finished else None,
                run_end=self.run_end,
            )

    def _segments(self) -> dict[str, int]:
        """The state DB's counts: exact at the start and the end, counted on in between."""
        if self.finished is not None:
            return {s: self.finished.totals.get(s, 0) for s in STATUSES}
        if self.started is None:
            return {}
        counts: dict[str, int] = {s: self.started.statuses.get(s, 0) for s in STATUSES}
        for status in (Status.SUCCESS, Status.SKIPPED, Status.FAILED):
            counts[status] += self.outcomes[status]
        counts[Status.PROCESSING] = len(self.transfers)
        done = sum(counts[s] for s in STATUSES if s != Status.PENDING)
        counts[Status.PENDING] = max(0, self.started.total - done)
        return counts

    def _rate(self, now: float, moved: int) -> float:
        """Bytes/s over the last RATE_WINDOW seconds of samples."""
        self._samples.append((now, moved))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW:
            self._samples.popleft()
        first_time, first_bytes = self._samples[0]
        span = now - first_time
        return (moved - first_bytes) / span if span > 0.2 else 0.0


class _Collector(Collector):
    def __init__(self, metrics: RunMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Family]:
        return iter(families(self._metrics.sample()))


def registry(metrics: RunMetrics) -> CollectorRegistry:
    """A registry of tfbulk's metrics only (no process or Python metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(metrics))
    return registry


def families(sample: Sample) -> list[Family]:
    """The metric families of one sample; with PostgreSQL each carries a `worker` label."""
    base = ["worker"] if sample.worker else []
    worker = [sample.worker] if sample.worker else []

    def gauge(name: str, doc: str, value: float | None) -> list[Family]:
        if value is None:
            return []
        family = GaugeMetricFamily(name, doc, labels=base)
        family.add_metric(worker, value)
        return [family]

    segments = GaugeMetricFamily("tfbulk_segments", "Segments by status.", labels=[*base, "status"])
    for status, count in sample.segments.items():
        segments.add_metric([*worker, status], count)
    requests = CounterMetricFamily(
        "tfbulk_requests", "HTTP responses by status code.", labels=[*base, "code"]
    )
    for code, count in sorted(sample.requests.items()):
        requests.add_metric([*worker, code], count)
    downloaded = CounterMetricFamily(
        "tfbulk_downloaded_bytes", "Bytes received this run.", labels=base
    )
    downloaded.add_metric(worker, sample.downloaded)
    retries = CounterMetricFamily("tfbulk_retries", "Attempts after a failed one.", labels=base)
    retries.add_metric(worker, sample.retries)
    return [
        segments,
        downloaded,
        requests,
        retries,
        *gauge("tfbulk_in_flight", "Downloads in flight.", sample.in_flight),
        *gauge("tfbulk_bytes_per_second", "Receive rate over ~10 s.", sample.rate),
        *gauge("tfbulk_run_start_timestamp_seconds", "When the run started.", sample.run_start),
        *gauge(
            "tfbulk_last_success_timestamp_seconds",
            "When a download last succeeded.",
            sample.last_success,
        ),
        *gauge("tfbulk_run_end_timestamp_seconds", "When the run ended.", sample.run_end),
        *gauge("tfbulk_exit_code", "The finished run's exit code.", sample.exit_code),
    ]
