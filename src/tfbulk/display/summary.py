"""End-of-run and `tfbulk status` renderings: the per-course table, totals, failures.

The same tables serve a terminal (boxes, colour, emoji) and a log (plain columns), so a
cron mail and a screen say the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich import box
from rich.console import Console, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from tfbulk.display.format import counted, human_bytes, human_duration, human_rate, percent
from tfbulk.settings import Limits, describe_limits
from tfbulk.state import CourseCounts, SegmentRecord, Summary, WorkerStatus

NO_LIMITS = Limits()
FAILURES_SHOWN = 20  # a run's summary lists these; `tfbulk failed` lists all
COURSES_SHOWN = 200
BAR_WIDTH = 10


def status_grid(
    *,
    success: int,
    processing: int,
    pending: int,
    failed: int,
    skipped: int,
    fancy: bool,
    compact: bool = False,
) -> Text:
    """The original dashboard's five counters, with emoji in a terminal, words in a log.

    `compact` drops the labels so the grid stays on one line in a narrow terminal.
    """
    if fancy:
        items = [
            ("✅", success, "success", "green"),
            ("🔄", processing, "processing", "cyan"),
            ("⏳", pending, "pending", "yellow"),
            ("❌", failed, "failed", "red"),
            ("⏭ ", skipped, "skipped", "blue"),
        ]
        text = Text()
        for index, (icon, count, label, style) in enumerate(items):
            if index:
                text.append("  ")
            text.append(f"{icon} {count:,}", style=f"bold {style}")
            if not compact:
                text.append(f" {label}", style="dim")
        text.no_wrap, text.overflow = True, "ellipsis"
        return text
    return Text(
        f"success {success:,} · processing {processing:,} · pending {pending:,} · "
        f"failed {failed:,} · skipped {skipped:,}"
    )


def course_table(courses: Sequence[CourseCounts], *, fancy: bool, bars: bool) -> Table:
    """Per-course counts; in 80 columns the title gives way, never a header or a number."""
    table = Table(
        box=box.SIMPLE_HEAD if fancy else None,
        pad_edge=False,
        show_edge=False,
        collapse_padding=True,
    )
    for name in ("course", "title", "total", "success", "skipped", "failed", "pending"):
        if name == "title":  # the one column rich may narrow; each cell still ends in "…"
            table.add_column(name, max_width=36)
        else:
            table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    if bars:
        table.add_column("done", justify="right", no_wrap=True, min_width=6)
        if fancy:
            table.add_column("", no_wrap=True, width=BAR_WIDTH)
    for course in courses[:COURSES_SHOWN]:
        pending = course.pending + course.processing
        cells: list[RenderableType] = [
            str(course.course_id),
            Text(course.title or "", no_wrap=True, overflow="ellipsis"),
            f"{course.total:,}",
            f"{course.success:,}",
            f"{course.skipped:,}",
            Text(f"{course.failed:,}", style="red" if course.failed and fancy else ""),
            f"{pending:,}",
        ]
        if bars:
            cells.extend(_done(course.done, course.total, fancy=fancy))
        table.add_row(*cells)
    if len(courses) > COURSES_SHOWN:
        hidden = counted(len(courses) - COURSES_SHOWN, "more course")
        table.add_row("…", f"and {hidden} (use --json)")
    return table


def _done(done: int, total: int, *, fancy: bool) -> list[RenderableType]:
    """The percent, then a bar: rich's takes the room that is left, text's is fixed."""
    if fancy:
        return [percent(done, total), ProgressBar(total=max(total, 1), completed=done)]
    filled = int(BAR_WIDTH * done / total) if total else BAR_WIDTH
    return [Text(f"{percent(done, total)} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}]")]


def totals_line(summary: Summary) -> str:
    pending = summary.total_of("pending") + summary.total_of("processing")
    return (
        f"{counted(summary.total, 'segment')}: {summary.total_of('success'):,} success, "
        f"{summary.total_of('skipped'):,} skipped, {summary.total_of('failed'):,} failed, "
        f"{pending:,} pending · {human_bytes(summary.total_of('bytes'))} on disk"
    )


def failures_table(records: Sequence[SegmentRecord], *, fancy: bool) -> Table:
    table = Table(box=box.SIMPLE_HEAD if fancy else None, pad_edge=False, show_edge=False)
    for name, justify in (("segment", "right"), ("course", "right"), ("attempts", "right")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("last error", overflow="fold")
    for record in records:
        table.add_row(
            str(record.segment_id), str(record.course_id), str(record.attempts), record.error or ""
        )
    return table


def segments_table(records: Sequence[SegmentRecord], *, fancy: bool) -> Table:
    """`status --course`: every segment of one course with its state."""
    table = Table(box=box.SIMPLE_HEAD if fancy else None, pad_edge=False, show_edge=False)
    for name in ("segment", "title", "state", "size", "attempts", "last error"):
        table.add_column(name, no_wrap=name != "last error", overflow="fold")
    for r in records:
        table.add_row(
            str(r.segment_id),
            r.title or "",
            r.status,
            human_bytes(r.size) if r.size else "",
            str(r.attempts),
            r.error or "",
        )
    return table


def workers_table(workers: Sequence[WorkerStatus], *, fancy: bool) -> Table:
    """`status` on a shared queue: who is pulling from it, and how fast."""
    table = Table(box=box.SIMPLE_HEAD if fancy else None, pad_edge=False, show_edge=False)
    for name, justify in (
        ("worker", "left"),
        ("host", "left"),
        ("claimed", "right"),
        ("last heartbeat", "right"),
        ("files", "right"),
        ("throughput", "right"),
        ("limits", "left"),
    ):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for w in workers:
        beat = f"{human_duration(w.heartbeat_age)} ago"
        table.add_row(
            w.id,
            w.host,
            f"{w.claimed:,}",
            beat if w.live else Text(f"lost, {beat}", style="red" if fancy else ""),
            f"{w.files:,}",
            human_rate(w.rate),
            describe_limits(w.limits),
        )
    return table


def print_run_summary(
    console: Console,
    summary: Summary,
    *,
    elapsed: float,
    downloaded: int,
    failures: Sequence[SegmentRecord],
    fancy: bool,
    hint: Callable[[str], str] = "tfbulk {}".format,
    limits: Limits = NO_LIMITS,
) -> None:
    """The view that replaces the live display when a run ends; with failures it ends with
    the command that requeues them (`hint("retry")`, as the user would type it)."""
    console.print(course_table(summary.courses, fancy=fancy, bars=False))
    console.print(totals_line(summary))
    rate = downloaded / elapsed if elapsed > 0 else 0.0
    console.print(
        f"downloaded {human_bytes(downloaded)} in {human_duration(elapsed)} ({human_rate(rate)})"
    )
    console.print(f"limits: {limits.describe()}")
    failed = summary.total_of("failed")
    if failed:
        console.print(f"\nfailed segments ({min(failed, FAILURES_SHOWN)} of {failed:,} shown):")
        console.print(failures_table(failures[:FAILURES_SHOWN], fancy=fancy))
        if failed > FAILURES_SHOWN:
            console.print(f"list them all with `{hint('failed')}`")
        console.print(
            f"to try {'it' if failed == 1 else 'them'} again, requeue and run the same command:"
            f"\n  {hint('retry')}"
        )


def one_line(summary: Summary, *, elapsed: float, exit_code: int) -> str:
    """`--quiet`'s whole report."""
    return f"tfbulk: {totals_line(summary)} · {human_duration(elapsed)} · exit {exit_code}"
