"""`--log-file`: one JSON object per event, appended, so cron runs build one history.

Messages pass through `redact`, and no event carries a URL, so no signature or key can
reach the file.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TextIO

from tfbulk.errors import BadInput
from tfbulk.pipeline.events import (
    Event,
    RunFinished,
    RunStarted,
    RunStopping,
    SegmentFailed,
    SegmentFinished,
    SegmentParked,
    SegmentRetrying,
    SegmentStarted,
)
from tfbulk.signing import redact


class JsonLog:
    def __init__(self, path: Path) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise BadInput(f"--log-file {path} cannot be opened: {exc.strerror}") from None
        self._file: TextIO = os.fdopen(fd, "a", encoding="utf-8", buffering=1)

    def __call__(self, event: Event) -> None:
        record = _record(event)
        if record is None:
            return
        record = {"ts": round(time.time(), 3), **record}
        if "reason" in record:
            record["reason"] = redact(str(record["reason"]))
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        if isinstance(event, RunFinished):
            self._file.close()


def _record(event: Event) -> dict[str, object] | None:
    match event:
        case RunStarted():
            return {
                "event": "run_start",
                "pid": os.getpid(),
                "total": event.total,
                "done": event.done,
                "failed": event.failed,
                "pending": event.pending,
                "concurrency": event.concurrency,
                "dest": event.dest,
                "scope": event.scope,
                "limits": event.limits.as_json(),
            }
        case SegmentStarted(transfer):
            return {
                "event": "segment_start",
                "segment_id": transfer.segment_id,
                "course_id": transfer.course_id,
                "attempt": transfer.attempt,
            }
        case SegmentRetrying():
            return {
                "event": "segment_retry",
                "segment_id": event.segment_id,
                "course_id": event.course_id,
                "attempt": event.attempt,
                "reason": event.reason,
                "delay_s": round(event.delay, 3),
            }
        case SegmentFinished():
            return {
                "event": f"segment_{event.status}",
                "segment_id": event.segment_id,
                "course_id": event.course_id,
                "bytes": event.size,
                "downloaded": event.downloaded,
                "seconds": round(event.seconds, 3),
            }
        case SegmentFailed():
            return {
                "event": "segment_failed",
                "segment_id": event.segment_id,
                "course_id": event.course_id,
                "attempts": event.attempts,
                "reason": event.reason,
            }
        case SegmentParked():
            return {"event": "segment_parked", "segment_id": event.segment_id}
        case RunStopping(reason):
            return {"event": "run_stopping", "reason": reason}
        case RunFinished():
            return {
                "event": "run_end",
                "exit_code": event.exit_code,
                "elapsed_s": round(event.elapsed, 3),
                "downloaded_bytes": event.downloaded,
                **event.totals,
            }
    return None
