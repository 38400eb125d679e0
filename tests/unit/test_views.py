"""The views render what the tracker knows: counts, courses, transfers, errors, summaries."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from rich.console import Console

from tfbulk.display.console import make_console
from tfbulk.display.live import LiveView
from tfbulk.display.logfile import JsonLog
from tfbulk.display.plain import PlainReporter
from tfbulk.display.summary import course_table, failures_table, print_run_summary, status_grid
from tfbulk.display.tracker import RunTracker
from tfbulk.pipeline.events import (
    CourseTotals,
    PlanProgress,
    RunFinished,
    RunStarted,
    SegmentFailed,
    SegmentFinished,
    SegmentRetrying,
    SegmentStarted,
    Transfer,
)
from tfbulk.state import CourseCounts, SegmentRecord, Summary

COURSES = (
    CourseTotals(1, "Blues Soloing 101", 20, 0, 0),
    CourseTotals(2, "Rock Improvisation 102", 20, 0, 0),
    CourseTotals(3, "Jazz Grooves 103", 20, 0, 0),
)


def busy_tracker(in_flight: int = 10) -> RunTracker:
    """A run with 60 segments: 12 done, 1 skipped, 2 failed, `in_flight` downloading."""
    tracker = RunTracker()
    tracker(RunStarted(60, 0, 0, 60, 10, "/srv/videos", "all courses", COURSES))
    for sid in range(100, 112):
        tracker(SegmentStarted(Transfer(sid, 1, f"Lesson {sid}", time.time(), 1)))
        tracker(SegmentFinished(sid, 1, "success", 1000, 0.1, 1000))
    tracker(SegmentFinished(112, 1, "skipped", 1000, 0.0, 0))
    tracker(SegmentFailed(113, 1, 5, "HTTP 404 Not Found"))
    tracker(SegmentFailed(114, 2, 5, "verification failed: not a video: the body is an HTML page"))
    tracker(SegmentRetrying(115, 2, 1, "HTTP 503 Service Unavailable", 2.0))
    for sid in range(200, 200 + in_flight):
        transfer = Transfer(sid, 2, f"Bending in Tune take {sid}", time.time() - 1, 1)
        transfer.size, transfer.received = 4_000_000, 1_000_000
        tracker(SegmentStarted(transfer))
    return tracker


def render(view: LiveView, width: int, height: int) -> list[str]:
    console = Console(record=True, width=width, height=height, force_terminal=True)
    console.print(view._frame())
    return console.export_text().rstrip("\n").splitlines()


def test_live_frame_fits_80x24_and_shows_everything_that_matters() -> None:
    tracker = busy_tracker()
    lines = render(LiveView(tracker, Console(width=80, height=24)), 80, 24)
    text = "\n".join(lines)
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
    assert "12 success" in text and "2 failed" in text and "1 skipped" in text
    assert "10 processing" in text and "35 pending" in text
    assert "15/60" in text
    assert "course 2" in text and "Rock Improvisation 102" in text
    assert "HTTP 404 Not Found" in text and "segment 113" in text
    assert "↓ 200" in text


def test_live_frame_uses_a_wide_terminal_for_titles_and_more_rows() -> None:
    tracker = busy_tracker()
    narrow = render(LiveView(tracker, Console(width=80, height=24)), 80, 24)
    wide = render(LiveView(tracker, Console(width=140, height=50)), 140, 50)
    assert "Bending in Tune" in "\n".join(wide)
    assert "Bending in Tune" not in "\n".join(narrow)
    assert sum("↓" in line for line in wide) == 10


@pytest.mark.parametrize(
    ("courses", "more"), [(9, "and 1 more course"), (12, "and 4 more courses")]
)
def test_live_frame_names_how_many_courses_it_leaves_out(courses: int, more: str) -> None:
    totals = tuple(CourseTotals(c, f"Course {c}", 5, 0, 0) for c in range(1, courses + 1))
    tracker = RunTracker()
    tracker(RunStarted(5 * courses, 0, 0, 5 * courses, 10, "/srv/videos", "all", totals))
    lines = render(LiveView(tracker, Console(width=140, height=50)), 140, 50)
    assert sum(line.lstrip().startswith("course ") for line in lines) == 8
    assert more in [line.strip() for line in lines]


def test_live_frame_in_a_tiny_terminal_keeps_the_essentials() -> None:
    lines = render(LiveView(busy_tracker(), Console(width=60, height=12)), 60, 12)
    text = "\n".join(lines)
    assert len(lines) <= 12
    assert "success" in text and "recent errors" in text


def test_plain_reporter_writes_log_lines_without_escape_codes() -> None:
    stream = io.StringIO()
    tracker = RunTracker()
    reporter = PlainReporter(tracker, stream, stats_interval=3600, quiet=False)
    for event in (
        RunStarted(60, 5, 1, 54, 10, "/srv/videos", "courses 1,2", COURSES),
        SegmentFailed(113, 1, 5, "HTTP 404 Not Found"),
    ):
        tracker(event)
        reporter(event)
    stats = reporter.stats_line()
    reporter(RunFinished(1, 1.0, 0, {}))
    out = stream.getvalue()
    assert "60 segments (courses 1,2) → /srv/videos" in out and "10 at once" in out
    assert "failed: segment 113 (course 1) after 5 attempts: HTTP 404 Not Found" in out
    assert "\x1b" not in out
    assert "7/60" in stats and "ETA" in stats and "2 failed" in stats


def test_plain_reporter_close_stops_its_ticker_without_a_run_finished() -> None:
    """A run that ends in an error sends no RunFinished: close() must still stop the stats
    thread, or it writes to a stream the caller has closed."""
    stream = io.StringIO()
    reporter = PlainReporter(RunTracker(), stream, stats_interval=3600, quiet=False)
    reporter(RunStarted(60, 0, 0, 60, 10, "/srv/videos", "all courses", COURSES))
    thread = reporter._thread
    assert thread is not None and thread.is_alive()
    reporter.close()
    assert not thread.is_alive()
    reporter.close()  # twice is fine: RunDisplay closes before and in finish()


def test_quiet_reporter_keeps_only_failures() -> None:
    stream = io.StringIO()
    tracker = RunTracker()
    reporter = PlainReporter(tracker, stream, stats_interval=3600, quiet=True)
    for event in (
        RunStarted(60, 0, 0, 60, 10, "/srv/videos", "all courses", COURSES),
        SegmentFinished(1, 1, "success", 10, 0.1, 10),
        SegmentFailed(2, 1, 1, "HTTP 410 Gone"),
    ):
        reporter(event)
    assert stream.getvalue().splitlines() == [
        "failed: segment 2 (course 1) after 1 attempt: HTTP 410 Gone"
    ]


@pytest.mark.parametrize("fancy", [True, False])
def test_summary_lists_courses_totals_and_the_first_20_failures(fancy: bool) -> None:
    summary = Summary(
        (
            CourseCounts(1, "Blues Soloing 101", 30, 5, 1, 24, 0, 0, 6000),
            CourseCounts(2, "Rock Improvisation 102", 10, 10, 0, 0, 0, 0, 2000),
        )
    )
    failures = [
        SegmentRecord(i, 1, None, None, "failed", 3, None, f"HTTP 404 #{i}") for i in range(24)
    ]
    console = Console(record=True, width=120, force_terminal=fancy, no_color=not fancy)
    print_run_summary(
        console, summary, elapsed=10.0, downloaded=8000, failures=failures, fancy=fancy
    )
    text = console.export_text()
    assert "Blues Soloing 101" in text and "Rock Improvisation 102" in text
    assert "40 segments: 15 success, 1 skipped, 24 failed, 0 pending" in text
    assert "HTTP 404 #19" in text and "HTTP 404 #20" not in text
    assert "20 of 24 shown" in text and "tfbulk failed" in text


def test_status_grid_speaks_words_in_logs_and_emoji_in_terminals() -> None:
    counts = {"success": 3, "processing": 2, "pending": 1, "failed": 4, "skipped": 5}
    assert str(status_grid(**counts, fancy=False)) == (
        "success 3 · processing 2 · pending 1 · failed 4 · skipped 5"
    )
    fancy = str(status_grid(**counts, fancy=True))
    assert "✅ 3" in fancy and "❌ 4" in fancy and "⏭" in fancy


def test_json_log_appends_one_object_per_event_and_redacts(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    for _ in range(2):
        log = JsonLog(path)
        log(RunStarted(1, 0, 0, 1, 1, "/d", "all courses"))
        log(
            SegmentFailed(
                1, 1, 2, "HTTP 403 at https://x/a.mp4?Expires=1&Signature=abc&Key-Pair-Id=K"
            )
        )
        log(RunFinished(1, 0.5, 0, {"total": 1, "failed": 1}))
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["event"] for e in events] == ["run_start", "segment_failed", "run_end"] * 2
    assert "Signature=REDACTED" in events[1]["reason"] and "abc" not in events[1]["reason"]
    assert events[2]["failed"] == 1 and events[2]["exit_code"] == 1


def test_first_stats_line_already_has_a_rate() -> None:
    now = [100.0]
    tracker = RunTracker(clock=lambda: now[0])
    tracker(RunStarted(10, 0, 0, 10, 2, "/d", "all courses", COURSES))
    tracker(SegmentStarted(Transfer(1, 1, None, 0.0, 1)))
    tracker(SegmentFinished(1, 1, "success", 5_000_000, 1.0, 5_000_000))
    now[0] = 105.0
    snap = tracker.snapshot()
    assert snap.rate_files == pytest.approx(1 / 5)
    assert snap.eta == pytest.approx(9 * 5)


LONG_COURSES = (
    CourseCounts(1, "Fingerstyle Grooves 104 and a long subtitle", 11, 10, 0, 1, 0, 0, 9),
    CourseCounts(12345, "X", 123_456, 100_000, 0, 1, 23_455, 0, 9),
)


def test_course_table_in_80_columns_shortens_titles_never_numbers() -> None:
    console = Console(record=True, width=80, force_terminal=True)
    console.print(course_table(LONG_COURSES, fancy=True, bars=True))
    lines = console.export_text().splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert lines[0].split() == [
        "course", "title", "total", "success", "skipped", "failed", "pending", "done"
    ]  # fmt: skip
    assert "123,456" in lines[3] and "100,000" in lines[3] and "23,455" in lines[3]
    assert "81.0%" in lines[3] and "━" in lines[3]
    assert "Fingers" in lines[2] and "…" in lines[2] and "90.9%" in lines[2]


def test_course_table_without_a_terminal_draws_text_bars() -> None:
    console = Console(record=True, width=100, force_terminal=False)
    console.print(course_table(LONG_COURSES, fancy=False, bars=True))
    text = console.export_text()
    assert "90.9% [#########.]" in text and "81.0% [########..]" in text


@pytest.mark.parametrize("terminal", [True, False])
def test_brackets_and_colons_in_data_print_as_they_are(terminal: bool) -> None:
    stream = io.StringIO()
    console = make_console(stream, terminal=terminal)
    console.width = 160  # room for the whole title
    title, error = "Slide [/b] [intro] :one: 101", "TLS error: [ssl: bad record] [/i]"
    console.print(
        course_table([CourseCounts(1, title, 1, 0, 0, 1, 0, 0, 0)], fancy=terminal, bars=True)
    )
    console.print(
        failures_table([SegmentRecord(5, 1, title, "p", "failed", 1, None, error)], fancy=terminal)
    )
    assert title in stream.getvalue() and error in stream.getvalue()


def test_live_view_shows_planning_before_the_run_starts() -> None:
    tracker = RunTracker()
    tracker(PlanProgress(6000))
    for width in (80, 120):
        text = "\n".join(render(LiveView(tracker, Console(width=width, height=24)), width, 24))
        assert "planning the snapshot: 6,000 segments so far" in text


@pytest.mark.parametrize("width", [80, 120])
def test_live_frame_keeps_finished_courses_and_drops_recovered_errors(width: int) -> None:
    tracker = busy_tracker(in_flight=2)
    tracker(SegmentFinished(115, 2, "success", 1000, 0.1, 1000))  # its 503 is behind it now
    for sid in range(300, 320):
        tracker(SegmentFinished(sid, 3, "success", 1000, 0.1, 1000))
    lines = render(LiveView(tracker, Console(width=width, height=30)), width, 30)
    text = "\n".join(lines)
    assert all(len(line) <= width for line in lines)
    done = next(line for line in lines if "course 3" in line)
    assert "20/20" in done and "done" in done
    assert "503" not in text and "1 segment recovered after a failed attempt" in text
    assert "HTTP 404 Not Found" in text  # a failure stays until it is retried


def test_status_grid_speaks_the_contracts_state_names() -> None:
    text = status_grid(success=1, processing=0, pending=2, failed=1, skipped=0, fancy=True).plain
    assert "1 success" in text and "2 pending" in text
    assert "successful" not in text and "queued" not in text


@pytest.mark.parametrize("width", [80, 120])
def test_summary_with_failures_ends_with_the_exact_retry_command(width: int) -> None:
    summary = Summary((CourseCounts(1, "Blues Soloing 101", 3, 2, 0, 1, 0, 0, 600),))
    failures = [SegmentRecord(7, 1, None, None, "failed", 5, None, "HTTP 404 Not Found")]
    console = Console(record=True, width=width, force_terminal=False, no_color=True)
    retry = ".venv/bin/tfbulk retry --dest '/srv/my videos'"
    print_run_summary(console, summary, elapsed=1.0, downloaded=600, failures=failures,
                      fancy=False, hint=lambda name: retry.replace("retry", name))  # fmt: skip
    lines = console.export_text().rstrip().splitlines()
    assert lines[-1].strip() == retry
    assert "to try it again" in lines[-2]
    assert all(len(line) <= width for line in lines)
