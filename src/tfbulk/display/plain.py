"""Log-friendly output for cron and pipes: no escape codes, no cursor moves, no bars.

A start line, one line per failed segment, a stats line every `--stats-interval`, then the
summary. The stats line comes from a timer thread, so a run stuck on one huge file still
reports.
"""

from __future__ import annotations

import threading
import time
from typing import TextIO

from tfbulk.display.format import counted, human_bytes, human_duration, human_rate, percent
from tfbulk.display.tracker import RunTracker
from tfbulk.pipeline.events import Event, RunFinished, RunStarted, RunStopping, SegmentFailed


class PlainReporter:
    def __init__(
        self, tracker: RunTracker, stream: TextIO, *, stats_interval: float, quiet: bool
    ) -> None:
        self._tracker = tracker
        self._stream = stream
        self._interval = stats_interval
        self._quiet = quiet
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, event: Event) -> None:
        match event:
            case RunStarted() if not self._quiet:
                todo = event.pending
                self._line(
                    f"tfbulk: {counted(event.total, 'segment')} ({event.scope}) → {event.dest} · "
                    f"{event.done:,} done, {event.failed:,} failed, {todo:,} pending · "
                    f"{event.concurrency} at once · limits: {event.limits.describe()}"
                )
                if event.state:
                    self._line(f"state DB: {event.state}")
                self._start_timer()
            case SegmentFailed():
                self._line(
                    f"failed: segment {event.segment_id} (course {event.course_id}) after "
                    f"{counted(event.attempts, 'attempt')}: {event.reason}"
                )
            case RunStopping(reason) if not self._quiet:
                self._line(f"stopping: {reason}")
            case RunFinished():
                self._stop.set()

    def stats_line(self) -> str:
        snap = self._tracker.snapshot()
        done = snap.success + snap.skipped + snap.failed
        return (
            f"[{human_duration(snap.elapsed)}] {done:,}/{snap.total:,} "
            f"({percent(done, snap.total)}) · {human_bytes(snap.bytes)} · "
            f"{human_rate(snap.rate_bytes)} · {snap.rate_files:.1f} files/s · "
            f"ETA {human_duration(snap.eta)} · {snap.failed:,} failed"
        )

    def close(self) -> None:
        """Stop the stats ticker and wait for it: after this nothing more is written, even
        when the run ended in an error and no RunFinished came (the stream may close)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _start_timer(self) -> None:
        self._thread = threading.Thread(target=self._tick, name="tfbulk-stats", daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        next_at = time.monotonic() + self._interval
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            self._line(self.stats_line())
            next_at += self._interval

    def _line(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()
