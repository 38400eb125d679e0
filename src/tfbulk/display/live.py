"""The terminal view: one rich `Live` frame, redrawn a few times a second from the tracker.

Rich redraws from its own thread, so a slow terminal blocks that thread and never the
downloads. The frame is sized to the terminal: in 80×24 every part still fits.
"""

from __future__ import annotations

import time

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from tfbulk.display.format import counted, human_bytes, human_duration, human_rate, percent
from tfbulk.display.summary import status_grid
from tfbulk.display.tracker import CourseProgress, Progress, RunTracker
from tfbulk.pipeline.events import Event, RunFinished, RunStarted

REFRESH_PER_SECOND = 4
COURSES_MAX = 8
ERRORS_MAX = 3


class LiveView:
    def __init__(self, tracker: RunTracker, console: Console) -> None:
        self._tracker = tracker
        self._console = console
        self._live: Live | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.start()
        elif isinstance(event, RunFinished):
            self.close()

    def start(self) -> None:
        """Show the view now: checking inputs and planning a big snapshot take seconds."""
        if self._live is None:
            self._live = Live(
                get_renderable=self._frame,
                console=self._console,
                refresh_per_second=REFRESH_PER_SECOND,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start(refresh=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _frame(self) -> RenderableType:
        snap = self._tracker.snapshot()
        if self._tracker.started is None:
            return _planning(snap.planned)
        width, height = self._console.size
        errors = snap.errors[-ERRORS_MAX:]
        transfer_rows, course_rows = _budget(height, snap, len(errors) + bool(snap.recovered))
        started = self._tracker.started
        parts: list[RenderableType] = [
            Text(_title(started), style="bold", overflow="ellipsis", no_wrap=True),
            Text(_limits(started), style="dim", overflow="ellipsis", no_wrap=True),
            self._overall(snap),
            status_grid(
                success=snap.success, processing=snap.processing, pending=snap.pending,
                failed=snap.failed, skipped=snap.skipped, fancy=True,
            ),
        ]  # fmt: skip
        if snap.transfers and transfer_rows:
            parts += [
                _label("downloading"),
                self._transfers(snap, transfer_rows, wide=width >= 110),
            ]
        if snap.courses and course_rows:
            parts += [_label("courses"), self._courses(snap, course_rows)]
        if snap.recovered:
            recovered = counted(snap.recovered, "segment")
            parts.append(_label(f"{recovered} recovered after a failed attempt", style="green"))
        if errors:
            parts.append(_label("recent errors", style="bold red"))
            parts += [
                Text(f"  segment {sid} (course {cid}): {reason}", style="red",
                     overflow="ellipsis", no_wrap=True)
                for sid, cid, reason in errors
            ]  # fmt: skip
        if snap.stopping:
            parts.append(Text(f"stopping: {snap.stopping}", style="bold yellow"))
        return Group(*parts)

    def _overall(self, snap: Progress) -> RenderableType:
        done = snap.done
        table = Table.grid(padding=(0, 1))
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True, overflow="ellipsis")
        table.add_row(
            ProgressBar(total=max(snap.total, 1), completed=done, width=24),
            f"{done:,}/{snap.total:,} {percent(done, snap.total)} · {human_bytes(snap.bytes)} · "
            f"{human_rate(snap.rate_bytes)} · ETA {human_duration(snap.eta)}",
        )
        return table

    def _transfers(self, snap: Progress, room: int, *, wide: bool) -> RenderableType:
        now = time.time()
        table = Table.grid(padding=(0, 1))
        for justify in ("right", "right", "left", "right", "right"):
            table.add_column(justify=justify, no_wrap=True)
        if wide:
            table.add_column(no_wrap=True, overflow="ellipsis", max_width=40)
        shown = snap.transfers[:room]
        for t in shown:
            speed = max(0, t.received - t.resumed_from) / max(now - t.started, 1e-3)
            size = human_bytes(t.size) if t.size else "?"
            bar = ProgressBar(total=t.size or 1, completed=t.received if t.size else 0, width=16)
            cells: list[RenderableType] = [
                f"↓ {t.segment_id}", f"c{t.course_id}", bar,
                f"{human_bytes(t.received)}/{size}", human_rate(speed),
            ]  # fmt: skip
            if wide:
                cells.append(Text(t.title or "", style="dim"))
            table.add_row(*cells)
        if len(snap.transfers) > len(shown):
            table.add_row("", "", f"… {len(snap.transfers) - len(shown)} more downloading")
        return table

    def _courses(self, snap: Progress, room: int) -> RenderableType:
        active = sorted(snap.courses, key=_course_order)
        table = Table.grid(padding=(0, 1))
        table.add_column(justify="right", no_wrap=True)
        table.add_column(no_wrap=True, overflow="ellipsis", max_width=28)
        table.add_column(no_wrap=True)
        table.add_column(justify="right", no_wrap=True)
        shown = active[:room]
        for course in shown:
            table.add_row(
                f"course {course.course_id}",
                course.title or "",
                ProgressBar(
                    total=max(course.total, 1), completed=course.done + course.failed, width=16
                ),
                f"{course.done:,}/{course.total:,}"
                + (f" ({course.failed} failed)" if course.failed else "")
                + _finished(course),
            )
        if len(active) > len(shown):
            table.add_row("", f"and {counted(len(active) - len(shown), 'more course')}", "", "")
        return table


def _finished(course: CourseProgress) -> str:
    if not course.finished or course.active:
        return ""
    return " ✗ finished" if course.failed else " ✓ done"


def _course_order(course: CourseProgress) -> tuple[int, float, int]:
    """Downloading first, then those finished this run (latest first), then the rest,
    then those already finished before it started."""
    if course.active:
        return 0, 0.0, course.course_id
    if course.finished_at is not None:
        return 1, -course.finished_at, course.course_id
    return (3 if course.finished else 2), 0.0, course.course_id


def _planning(planned: int) -> RenderableType:
    so_far = f": {counted(planned, 'segment')} so far" if planned else ""
    return Group(
        Text("tfbulk", style="bold"),
        Text(f"checking the inputs and planning the snapshot{so_far}", style="dim"),
    )


def _title(started: RunStarted | None) -> str:
    if started is None:
        return "tfbulk"
    return (
        f"tfbulk · {counted(started.total, 'segment')} · {started.scope} → {started.dest} · "
        f"{started.concurrency} at once" + (f" · state DB {started.state}" if started.state else "")
    )


def _limits(started: RunStarted | None) -> str:
    return f"limits: {started.limits.describe()}" if started else ""


def _label(text: str, style: str = "dim") -> Text:
    return Text(text, style=style)


def _budget(height: int, snap: Progress, errors: int) -> tuple[int, int]:
    """Rows for transfers and courses so the frame fits the terminal's height.

    Fixed lines (title, limits, bar, grid, errors, stop notice, a spare line) come first;
    transfers get what they need up to half the rest, courses the remainder (≤ 8).
    """
    fixed = 4 + (errors + 1 if errors else 0) + (1 if snap.stopping else 0) + 1
    room = max(0, height - fixed)
    wanted_courses = min(COURSES_MAX, len(snap.courses))
    course_lines = min(wanted_courses, max(0, room // 2 - 2))
    transfers = min(
        len(snap.transfers), max(0, room - (course_lines + 2 if course_lines else 0) - 1)
    )
    room_left = room - (transfers + 1 if transfers else 0)
    courses = min(wanted_courses, max(0, room_left - 2))
    return transfers, courses
