"""`tfbulk status`, `failed` and `retry`: reading and requeueing the state DB (no HTTP stack,
no signer, no event loop is loaded)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from tfbulk.display.console import make_console
from tfbulk.display.summary import (
    course_table,
    failures_table,
    segments_table,
    status_grid,
    totals_line,
    workers_table,
)
from tfbulk.errors import BadInput
from tfbulk.state import Status, WorkerStatus

if TYPE_CHECKING:
    pass

from tfbulk.cli.options import (
    AsJson,
    Courses,
    Dest,
    Segments,
    State,
    open_existing,
)
from tfbulk.cli.output import print_json


def status_command(
    dest: Dest = "downloads",
    state: State = None,
    course: Annotated[
        int | None, typer.Option("--course", help="List this course's segments.")
    ] = None,
    as_json: AsJson = False,
) -> int:
    """Counts from the state DB, overall and per course."""
    store = open_existing(state, dest)
    try:
        summary = store.summary(scoped=False, course=course)
        records = store.records(course=course) if course is not None else []
        workers = store.workers()
    finally:
        store.close()
    if course is not None and not summary.courses:
        raise BadInput(f"course {course} is not in the state DB")
    if as_json:
        data = summary.as_json()
        if course is not None:
            data["segments"] = [
                {
                    "segment_id": r.segment_id,
                    "title": r.title,
                    "status": r.status,
                    "size": r.size,
                    "attempts": r.attempts,
                    "error": r.error,
                    "path": r.path,
                }
                for r in records
            ]
        data["workers"] = [_worker_json(w) for w in workers]
        print_json(data)
        return 0
    console = make_console(sys.stdout, terminal=sys.stdout.isatty())
    fancy = sys.stdout.isatty()
    console.print(
        status_grid(
            success=summary.total_of("success"),
            processing=summary.total_of("processing"),
            queued=summary.total_of("pending"),
            failed=summary.total_of("failed"),
            skipped=summary.total_of("skipped"),
            fancy=fancy,
        )
    )
    console.print(course_table(summary.courses, fancy=fancy, bars=True))
    if records:
        console.print(segments_table(records, fancy=fancy))
    console.print(totals_line(summary))
    if workers:
        console.print(workers_table(workers, fancy=fancy))
    return 0


def _worker_json(worker: WorkerStatus) -> dict[str, object]:
    return {
        "id": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "live": worker.live,
        "claimed": worker.claimed,
        "started": _iso(worker.started),
        "last_heartbeat": _iso(worker.last_heartbeat),
        "heartbeat_age_s": round(worker.heartbeat_age, 3),
        "files": worker.files,
        "bytes": worker.bytes,
        "throughput_bps": round(worker.rate),
    }


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def failed_command(
    dest: Dest = "downloads",
    state: State = None,
    course: Annotated[int | None, typer.Option("--course", help="Only this course.")] = None,
    as_json: AsJson = False,
) -> int:
    """Failed segments with their last error."""
    store = open_existing(state, dest)
    try:
        records = store.records(course=course, status=Status.FAILED)
    finally:
        store.close()
    if as_json:
        print_json(
            [
                {
                    "segment_id": r.segment_id,
                    "course_id": r.course_id,
                    "attempts": r.attempts,
                    "error": r.error,
                    "title": r.title,
                    "path": r.path,
                }
                for r in records
            ]
        )
        return 0
    if not records:
        typer.echo("no failed segments")
        return 0
    console = make_console(sys.stdout, terminal=sys.stdout.isatty())
    console.print(failures_table(records, fancy=sys.stdout.isatty()))
    console.print(f"{len(records):,} failed; requeue them with `tfbulk retry`")
    return 0


def retry_command(
    dest: Dest = "downloads",
    state: State = None,
    course: Courses = None,
    segment: Segments = None,
    as_json: AsJson = False,
) -> int:
    """Put failed segments back to pending (all, or --course/--segment)."""
    store = open_existing(state, dest)
    try:
        count = store.requeue_failed(course or (), segment or ())
    finally:
        store.close()
    if as_json:
        print_json({"requeued": count})
    else:
        typer.echo(
            f"requeued {count:,} failed segment{'s' if count != 1 else ''}; "
            "run `tfbulk run` with the same flags to download them"
        )
    return 0
