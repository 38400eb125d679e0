"""Generated snapshots through plan and a real run: arbitrary unicode, NUL, very long and odd
values in every column, duplicate and negative ids. Whatever comes, a run ends with an
exit code (never a traceback) and nothing is written outside --dest.

In-process (`runner.run`) against the real origin, so a hundred snapshots take seconds.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfbulk.commands.run import run
from tfbulk.errors import TfbulkError
from tfbulk.origin import Origin, SyntheticContent
from tfbulk.pipeline.events import Event
from tfbulk.settings import RunSettings, SignerSettings, Tuning

ids = st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.sampled_from([-1, 0, 1, 7])
odd_text = st.text(max_size=40) | st.text(alphabet="./\\\x00%{}~ é", max_size=12)
long_text = st.text(alphabet="aé/", min_size=240, max_size=600)
text_value = st.none() | odd_text | long_text
video = (
    st.builds(lambda rest: "mp4:" + rest, st.text(min_size=1, max_size=40) | long_text)
    | st.builds(lambda rest: "mp4:course/" + rest, st.text(min_size=1, max_size=20))
    | st.none()
    | st.sampled_from(["mp4:", "mp4:../../etc/passwd", "mp4:/abs", "mp4:a\x00b", "MP4:x"])
    | odd_text
)
value = st.one_of(ids, text_value, st.floats(allow_nan=True), st.binary(max_size=8))


@st.composite
def mostly(draw: st.DrawFn, ids: list[object], other: st.SearchStrategy) -> object:
    """One of `ids` three times in four, anything else otherwise."""
    if draw(st.integers(0, 3)):
        return draw(st.sampled_from(ids))
    return draw(other)


@st.composite
def catalogue(draw: st.DrawFn) -> tuple[list, list, list]:
    """Rows that mostly join up (channels of listed courses, segments of listed channels),
    with any value in any column now and then, and ids that repeat."""
    courses = draw(st.lists(st.tuples(ids, text_value | value), min_size=1, max_size=4))
    course_ids = [row[0] for row in courses]
    channels = draw(st.lists(st.tuples(ids, mostly(course_ids, value)), min_size=1, max_size=4))
    channel_ids = [row[0] for row in channels]
    segments = draw(
        st.lists(
            st.tuples(mostly([1, 2, 3, -4], value), mostly(channel_ids, value), video, text_value),
            min_size=1,
            max_size=8,
        )
    )
    return courses, channels, segments


TEMPLATES = [
    "{course_id}/{segment_id}.mp4",
    "{course_id}/{video}.mp4",
    "{video_dir}/{video_name}",
    "{channel_id}/{video_name}_{segment_id}.mp4",
]


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    with Origin(content=SyntheticContent(min_size=2048, max_size=4096)) as server:
        yield server


def write_snapshot(path: Path, data: tuple[list, list, list]) -> None:
    """Tables with the contract's columns and no constraints: duplicates and odd types pass."""
    courses, channels, segments = data
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE courses (id, title)")
        conn.execute("CREATE TABLE channels (id, courseid)")
        conn.execute("CREATE TABLE segments (id, channel_id, video, title)")
        conn.executemany("INSERT INTO courses VALUES (?, ?)", courses)
        conn.executemany("INSERT INTO channels VALUES (?, ?)", channels)
        conn.executemany("INSERT INTO segments VALUES (?, ?, ?, ?)", segments)
    conn.close()


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def ignore(_event: Event) -> None:
    return None


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=catalogue(), template=st.sampled_from(TEMPLATES))
def test_any_snapshot_ends_in_an_exit_code_and_stays_inside_dest(
    tmp_path_factory: pytest.TempPathFactory,
    origin: Origin,
    data: tuple[list, list, list],
    template: str,
) -> None:
    work = tmp_path_factory.mktemp("fuzz")
    snapshot = work / "snapshot.db"
    write_snapshot(snapshot, data)
    dest = work / "dest"
    before = tree(work)
    run_settings = RunSettings(
        snapshot=snapshot,
        dest=dest,
        state=str(dest / ".tfbulk" / "state.db"),
        url_template=f"{origin.base_url}/fuzz/{{segment_id}}.mp4",
        path_template=template,
        signer=SignerSettings(kind="none"),
        tuning=Tuning(concurrency=4, retries=2, backoff_base=0.01, backoff_max=0.02),
    )
    outcome = "ran"
    try:
        report = run(run_settings, ignore, handle_signals=False)
    except TfbulkError as exc:
        assert exc.exit_code in (2, 3), exc  # bad input, said in one line
        assert "\n" not in str(exc)
        outcome = str(exc).replace(str(work), "").split(";")[0]
    else:
        assert report.exit_code in (0, 1)
        assert report.summary.total_of("processing") == 0
        for final in dest.rglob("*"):
            assert not final.is_symlink()
            assert dest.resolve() in final.resolve().parents
    outside = tree(work) - before - {p for p in tree(work) if p.startswith("dest")}
    assert outside == set(), f"written outside --dest: {outside}"
    assert {p.name for p in work.iterdir()} <= {"snapshot.db", "dest"}
    OUTCOMES[outcome] = OUTCOMES.get(outcome, 0) + 1
    shutil.rmtree(work)


OUTCOMES: dict[str, int] = {}


def test_the_generated_snapshots_reached_the_downloads() -> None:
    """The property above is only worth something if many examples got as far as a run."""
    assert OUTCOMES.get("ran", 0) >= 10, OUTCOMES
