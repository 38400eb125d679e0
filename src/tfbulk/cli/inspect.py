"""`tfbulk status`, `failed` and `retry`: reading and requeueing the state DB (no HTTP stack,
no signer, no event loop is loaded)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated

import typer

from tfbulk.cli.app import examples
from tfbulk.cli.options import (
    AsJson,
    Courses,
    Dest,
    Segments,
    State,
    open_existing,
)
from tfbulk.cli.output import print_json
from tfbulk.display.console import make_console
from tfbulk.display.format import counted
from tfbulk.display.summary import (
    course_table,
    failures_table,
    segments_table,
    status_grid,
    totals_line,
    workers_table,
)
from tfbulk.errors import BadInput
from tfbulk.invocation import command, place
from tfbulk.state import Status, Store, WorkerStatus

STATUS_EXAMPLES = examples(
    "tfbulk status --dest /srv/videos",
    "tfbulk status --dest /srv/videos --course 7",
    "tfbulk status --dest /srv/videos --json",
    "tfbulk status --state postgresql://tfbulk@db/tfbulk",
)
FAILED_EXAMPLES = examples(
    "tfbulk failed --dest /srv/videos",
    "tfbulk failed --dest /srv/videos --course 7",
    "tfbulk failed --dest /srv/videos --json",
)
RETRY_EXAMPLES = examples(
    "tfbulk retry --dest /srv/videos",
    "tfbulk retry --dest /srv/videos --course 7",
    "tfbulk retry --dest /srv/videos --segment 1042 --segment 1043",
    "# then the run command again downloads them",
)


def status_command(
    dest: Dest = "downloads",
    state: State = None,
    course: Annotated[
        int | None, typer.Option("--course", metavar="ID", help="List this course's segments.")
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
            pending=summary.total_of("pending"),
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
        "limits": worker.limits,
    }


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def failed_command(
    dest: Dest = "downloads",
    state: State = None,
    course: Annotated[
        int | None, typer.Option("--course", metavar="ID", help="Only this course.")
    ] = None,
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
    console.print(
        f"{counted(len(records), 'failed segment')}; requeue them with "
        f"`{command('retry', *place(dest, state))}`"
    )
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
        _refuse_unknown(store, course or (), segment or ())
        count = store.requeue_failed(course or (), segment or ())
    finally:
        store.close()
    if as_json:
        print_json({"requeued": count})
    elif count:
        typer.echo(
            f"requeued {counted(count, 'failed segment')}; "
            f"run `{command('run')}` with the same flags to download them"
        )
    else:
        typer.echo(f"nothing to retry: no failed segment{_among(course, segment)}")
    return 0


def _refuse_unknown(store: Store, courses: Sequence[int], segments: Sequence[int]) -> None:
    """An id that is not in the state DB is a typo or the wrong --dest: exit 2, naming it."""
    for course_id in courses:
        if not store.summary(scoped=False, course=course_id).courses:
            raise BadInput(f"course {course_id} is not in the state DB; check the id and --dest")
    failed = {r.segment_id for r in store.records(status=Status.FAILED)}
    if any(s not in failed for s in segments):
        known = {r.segment_id for r in store.records()}
        for segment_id in segments:
            if segment_id not in known:
                raise BadInput(
                    f"segment {segment_id} is not in the state DB; check the id and --dest"
                )


def _among(courses: Sequence[int] | None, segments: Sequence[int] | None) -> str:
    flags = [f"--course {c}" for c in courses or ()] + [f"--segment {s}" for s in segments or ()]
    return f" among {' '.join(flags)}" if flags else ""
