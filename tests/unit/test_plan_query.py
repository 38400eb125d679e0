"""The plan as SQL (PlanQuery) against the plan in Python (plan_rows): for any snapshot
and any integer-only path template, a store planned either way holds the same rows, and
planning counts the same. Snapshots come from the fuzz test's generator."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.test_snapshot_fuzz import catalogue, ids, text_value, video, write_snapshot
from tfbulk.errors import BadInput
from tfbulk.pipeline.plan import (
    PlanQuery,
    PlanStats,
    Template,
    paths_are_distinct,
    plan_query,
    plan_rows,
)
from tfbulk.pipeline.snapshot import Snapshot
from tfbulk.settings import Scope
from tfbulk.state import open_store

TEMPLATES = [
    "{course_id}/{segment_id}.mp4",
    "{segment_id}.mp4",
    "it's {course_id}-{segment_id}",  # a quote in a literal
    "{course_id}/lesson.mp4",  # segments of a course share a path: refused
    "a/{segment_id}/b/{course_id}.mp4",
]
plain_ids = st.sampled_from([1, 2, 3, -4, 2**63 - 1]) | ids


@st.composite
def plain_catalogue(draw: st.DrawFn) -> tuple[list, list, list]:
    """Values of the contract's types (NULLs and duplicates included), the snapshots a
    PlanQuery takes; now and then one odd value from the fuzz test's generator."""
    if draw(st.integers(0, 9)) == 0:
        return draw(catalogue())
    courses = draw(st.lists(st.tuples(plain_ids, text_value), min_size=1, max_size=4))
    course_ids = st.sampled_from([row[0] for row in courses]) | st.none() | plain_ids
    channels = draw(st.lists(st.tuples(plain_ids, course_ids), min_size=1, max_size=4))
    channel_ids = st.sampled_from([row[0] for row in channels]) | st.none() | plain_ids
    segment = st.tuples(plain_ids | st.none(), channel_ids, video.filter(_text_or_none), text_value)
    return courses, channels, draw(st.lists(segment, min_size=1, max_size=8))


def _text_or_none(value: object) -> bool:
    return value is None or isinstance(value, str)


STATS = ("segments", "no_id", "orphans", "no_video", "planned", "refused", "courses")


def stored(state: Path) -> list[tuple[object, ...]]:
    """The segments as planned (all but their times), the counts kept of them, the courses;
    and whether the counts trigger is still there for the run's updates."""
    with sqlite3.connect(state) as conn:
        rows = conn.execute(
            "SELECT id, course_id, channel_id, video, title, path, status, error, size, md5, "
            "attempts, run_attempts, next_at, replace FROM segments ORDER BY id"
        ).fetchall()
        rows += conn.execute("SELECT * FROM counts WHERE n > 0 ORDER BY 1, 2").fetchall()
        rows += conn.execute("SELECT * FROM courses ORDER BY id").fetchall()
        rows += conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name"
        ).fetchall()
    conn.close()
    return rows


def planned(snapshot: Snapshot, template: Template, state: Path, *, as_sql: bool) -> object:
    """(stats, stored rows) of a plan made one way, or the refusal's message."""
    stats = PlanStats()
    query = plan_query(snapshot, Scope(), template, stats) if as_sql else None
    rows = query or plan_rows(snapshot.segments(ordered=False), Scope(), template, stats)
    store = open_store(str(state), create=True, lock=False)
    try:
        store.plan(rows, snapshot.course_titles(), distinct_paths=paths_are_distinct(template))
    except BadInput as exc:
        return str(exc)
    finally:
        store.close()
    return {name: getattr(stats, name) for name in STATS}, stored(state)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=plain_catalogue(), text=st.sampled_from(TEMPLATES))
def test_a_plan_made_by_sqlite_is_the_plan_made_in_python(
    tmp_path_factory: pytest.TempPathFactory, data: tuple[list, list, list], text: str
) -> None:
    work = tmp_path_factory.mktemp("plan")
    write_snapshot(work / "snapshot.db", data)
    template = Template(text, "--path-template")
    with Snapshot.open(work / "snapshot.db") as snapshot:
        if plan_query(snapshot, Scope(), template, PlanStats()) is None:
            assert snapshot.sql() is None  # only odd values send a plain template to Python
            COMPARED["python only"] += 1
            return
        by_sql = planned(snapshot, template, work / "sql.db", as_sql=True)
        by_python = planned(snapshot, template, work / "python.db", as_sql=False)
    assert by_sql == by_python
    COMPARED["refused" if isinstance(by_sql, str) else "planned"] += 1


COMPARED: Counter[str] = Counter()


def test_the_generated_snapshots_were_planned_both_ways() -> None:
    """The property above is only worth something if many examples took both ways."""
    assert COMPARED["planned"] >= 10, COMPARED


def test_templates_that_only_python_renders_have_no_query(tmp_path: Path) -> None:
    write_snapshot(tmp_path / "s.db", ([(1, "C")], [(10, 1)], [(5, 10, "mp4:c/l", "T")]))
    with Snapshot.open(tmp_path / "s.db") as snapshot:
        for text in (
            "{video}.mp4",
            "{channel_id}/{segment_id}",
            "../{segment_id}",
            ".x/{course_id}",
        ):
            assert plan_query(snapshot, Scope(), Template(text, "t"), PlanStats()) is None
        for scope in (Scope(courses=frozenset({1})), Scope(limit_courses=1)):
            assert plan_query(snapshot, scope, Template("{segment_id}", "t"), PlanStats()) is None
        query = plan_query(snapshot, Scope(), Template("{segment_id}", "t"), PlanStats())
    assert isinstance(query, PlanQuery)


@pytest.mark.parametrize(
    ("text", "distinct"),
    [
        ("{course_id}/{segment_id}.mp4", True),
        ("{segment_id}", True),
        ("{video}/x-{segment_id}.mp4", True),
        ("{segment_id}/{course_id}.mp4", False),
        ("{course_id}{segment_id}.mp4", False),  # 1 and 23, 12 and 3
        ("{segment_id}/", False),
        ("{course_id}/lesson.mp4", False),
    ],
)
def test_paths_are_distinct_only_when_the_file_name_is_the_segment_id(
    text: str, distinct: bool
) -> None:
    assert paths_are_distinct(Template(text, "--path-template")) is distinct


def test_a_query_plan_that_maps_two_segments_to_one_file_is_refused(tmp_path: Path) -> None:
    """The refusal, and its rollback, whichever way the rows were made."""
    segments = [(5, 10, "mp4:c/a", "A"), (6, 10, "mp4:c/b", "B")]
    write_snapshot(tmp_path / "s.db", ([(1, "C")], [(10, 1)], segments))
    with Snapshot.open(tmp_path / "s.db") as snapshot:
        template = Template("{course_id}/lesson.mp4", "--path-template")
        refused = planned(snapshot, template, tmp_path / "state.db", as_sql=True)
    assert isinstance(refused, str) and "maps 2 segments (e.g. 5 and 6)" in refused
    assert stored(tmp_path / "state.db") == TRIGGERS  # no rows, and the dropped trigger back


TRIGGERS = [("counts_deleted",), ("counts_inserted",), ("counts_updated",)]


def test_a_plan_into_a_planned_store_keeps_its_counts(tmp_path: Path) -> None:
    """The first plan fills an empty store without the counts trigger; a second plan and a
    finished download count through the triggers again, as from the start."""
    segments = [(5, 10, "mp4:c/a", "A"), (6, 10, "mp4:c/b", "B")]
    write_snapshot(tmp_path / "s.db", ([(1, "C")], [(10, 1)], segments))
    write_snapshot(
        tmp_path / "more.db", ([(1, "C")], [(10, 1)], [*segments, (7, 10, "mp4:c/c", "")])
    )
    template = Template("{course_id}/{segment_id}.mp4", "--path-template")
    for name in ("s.db", "more.db"):
        with Snapshot.open(tmp_path / name) as snapshot:
            planned(snapshot, template, tmp_path / "state.db", as_sql=True)
    with sqlite3.connect(tmp_path / "state.db") as conn:
        conn.execute("UPDATE segments SET status = 'success', size = 9 WHERE id = 6")
        counts = conn.execute(
            "SELECT status, n, bytes FROM counts WHERE n > 0 ORDER BY 1"
        ).fetchall()
    conn.close()
    assert counts == [("pending", 2, 0), ("success", 1, 9)]


def test_a_video_with_a_nul_character_is_planned_as_python_plans_it(tmp_path: Path) -> None:
    """SQLite's string functions stop at a NUL; such a snapshot goes to the Python planner."""
    segments = [(5, 10, "mp4:\x00", "A"), (6, 10, "mp4:c/b\x00x", "B")]
    write_snapshot(tmp_path / "s.db", ([(1, "C")], [(10, 1)], segments))
    template = Template("{segment_id}.mp4", "--path-template")
    with Snapshot.open(tmp_path / "s.db") as snapshot:
        by_sql = planned(snapshot, template, tmp_path / "sql.db", as_sql=True)
        by_python = planned(snapshot, template, tmp_path / "python.db", as_sql=False)
    assert by_sql == by_python
