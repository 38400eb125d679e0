"""The catalogue snapshot: refusals that name the file and the problem, rows, read-only."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tfbulk.errors import BadInput
from tfbulk.origin.sample import guitar_catalogue, write_snapshot
from tfbulk.pipeline.snapshot import Snapshot, SnapshotCounts, SnapshotSegment

FULL_SCHEMA = """
CREATE TABLE courses (id INTEGER PRIMARY KEY, title TEXT);
CREATE TABLE channels (id INTEGER PRIMARY KEY, courseid INTEGER);
CREATE TABLE segments (id INTEGER PRIMARY KEY, channel_id INTEGER, video TEXT, {extra});
"""


def make_db(path: Path, script: str) -> Path:
    conn = sqlite3.connect(path)
    try:
        conn.executescript(script)
        conn.commit()
    finally:
        conn.close()
    return path


def refusal(path: Path) -> str:
    with pytest.raises(BadInput) as info:
        Snapshot.open(path)
    message = str(info.value)
    assert str(path) in message
    return message


# -- refusals ---------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert "does not exist" in refusal(tmp_path / "nope.db")


def test_directory(tmp_path: Path) -> None:
    assert "is a directory" in refusal(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    assert "is empty" in refusal(path)


@pytest.mark.parametrize(
    "content", [b"id,title\n1,Blues\n", b"SQLite", b"SQLite format 2\x00" + b"\x00" * 100]
)
def test_not_sqlite(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "catalogue.csv"
    path.write_bytes(content)
    assert "is not a SQLite database" in refusal(path)


def test_corrupt_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 2000)
    assert "cannot be read as SQLite" in refusal(path)


@pytest.mark.parametrize("table", ["segments", "channels", "courses"])
def test_missing_table(tmp_path: Path, table: str) -> None:
    script = FULL_SCHEMA.format(extra="title TEXT")
    script = "\n".join(line for line in script.splitlines() if f"TABLE {table} " not in line)
    message = refusal(make_db(tmp_path / "snap.db", script))
    assert f"has no table {table}" in message


def test_all_tables_missing(tmp_path: Path) -> None:
    message = refusal(make_db(tmp_path / "snap.db", "CREATE TABLE other (x INTEGER);"))
    assert "has no table courses, channels, segments" in message


@pytest.mark.parametrize(
    ("script", "missing"),
    [
        (
            FULL_SCHEMA.format(extra="title TEXT").replace("courseid INTEGER", "course INTEGER"),
            "channels.courseid",
        ),
        (
            FULL_SCHEMA.format(extra="title TEXT").replace("video TEXT", "media TEXT"),
            "segments.video",
        ),
        (
            FULL_SCHEMA.format(extra="title TEXT").replace(
                "courses (id INTEGER PRIMARY KEY, title TEXT)", "courses (id INTEGER, name TEXT)"
            ),
            "courses.title",
        ),
        (
            FULL_SCHEMA.format(extra="title TEXT").replace(
                "segments (id INTEGER PRIMARY KEY, channel_id INTEGER",
                "segments (id INTEGER PRIMARY KEY, channel INTEGER",
            ),
            "segments.channel_id",
        ),
    ],
)
def test_missing_column(tmp_path: Path, script: str, missing: str) -> None:
    message = refusal(make_db(tmp_path / "snap.db", script))
    assert f"lacks column {missing}" in message


# -- a valid snapshot ---------------------------------------------------------------------


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return write_snapshot(tmp_path / "snapshot.db", guitar_catalogue(3, 10))


def test_valid_snapshot_segments(sample: Path) -> None:
    catalogue = guitar_catalogue(3, 10)
    with Snapshot.open(sample) as snap:
        segments = [SnapshotSegment._make(row) for row in snap.segments()]
        counts = snap.counts()
        titles = snap.course_titles()
    expected = [
        SnapshotSegment(s.segment_id, s.channel_id, course.course_id, s.video, s.title)
        for course in catalogue
        for s in course.segments
    ]
    assert segments == expected
    assert counts == SnapshotCounts(
        courses=3, channels=sum(len(c.channels) for c in catalogue), segments=30
    )
    assert titles == {c.course_id: c.title for c in catalogue}
    # Some sample segments have no video, so "no video" has something to count.
    assert any(s.video is None for s in segments)
    assert segments[0] == SnapshotSegment(1001, 100, 1, "mp4:blues101/lesson_01", "Intro")
    assert segments[6] == SnapshotSegment(1007, 100, 1, None, "Double Stops")  # each 7th


def test_segments_ordered_by_course_then_id(tmp_path: Path) -> None:
    path = make_db(
        tmp_path / "snap.db",
        FULL_SCHEMA.format(extra="title TEXT")
        + """
        INSERT INTO courses VALUES (1, 'One'), (2, 'Two');
        INSERT INTO channels VALUES (100, 2), (200, 1), (300, NULL);
        INSERT INTO segments VALUES
          (5, 100, 'mp4:a', 'e'), (1, 100, 'mp4:b', 'a'), (9, 200, 'mp4:c', 'i'),
          (3, 200, NULL, 'c'), (7, 999, 'mp4:orphan', 'g'), (8, 300, 'mp4:d', 'h'),
          (2, NULL, 'mp4:e', 'b');
        """,
    )
    with Snapshot.open(path) as snap:
        segments = [SnapshotSegment._make(row) for row in snap.segments()]
    assert [(s.course_id, s.segment_id) for s in segments] == [
        (None, 2),
        (None, 7),
        (None, 8),
        (1, 3),
        (1, 9),
        (2, 1),
        (2, 5),
    ]
    orphans = {s.segment_id: s for s in segments if s.course_id is None}
    assert orphans[7] == SnapshotSegment(7, 999, None, "mp4:orphan", "g")
    assert orphans[2] == SnapshotSegment(2, None, None, "mp4:e", "b")


def test_titles_from_name_column(tmp_path: Path) -> None:
    path = make_db(
        tmp_path / "snap.db",
        FULL_SCHEMA.format(extra="name TEXT")
        + "INSERT INTO courses VALUES (1, NULL);"
        + "INSERT INTO channels VALUES (10, 1);"
        + "INSERT INTO segments VALUES (1, 10, 'mp4:x', 'From name');",
    )
    with Snapshot.open(path) as snap:
        assert list(snap.segments()) == [SnapshotSegment(1, 10, 1, "mp4:x", "From name")]
        assert snap.course_titles() == {1: None}


def test_title_preferred_over_name(tmp_path: Path) -> None:
    path = make_db(
        tmp_path / "snap.db",
        FULL_SCHEMA.format(extra="name TEXT, title TEXT")
        + "INSERT INTO courses VALUES (1, 'c');"
        + "INSERT INTO channels VALUES (10, 1);"
        + "INSERT INTO segments VALUES (1, 10, 'mp4:x', 'the name', 'the title');",
    )
    with Snapshot.open(path) as snap:
        assert [title for *_, title in snap.segments()] == ["the title"]


def test_no_title_column(tmp_path: Path) -> None:
    path = make_db(
        tmp_path / "snap.db",
        FULL_SCHEMA.format(extra="runtime INTEGER")
        + "INSERT INTO courses VALUES (1, 'c');"
        + "INSERT INTO channels VALUES (10, 1);"
        + "INSERT INTO segments VALUES (1, 10, 'mp4:x', 60);",
    )
    with Snapshot.open(path) as snap:
        assert list(snap.segments()) == [SnapshotSegment(1, 10, 1, "mp4:x", None)]


def test_odd_values(tmp_path: Path) -> None:
    path = make_db(
        tmp_path / "snap.db",
        FULL_SCHEMA.format(extra="title TEXT")
        + "INSERT INTO courses VALUES (1, 'c');"
        + "INSERT INTO channels VALUES (10, '1');"  # text course id
        + "INSERT INTO segments VALUES (1, 10, X'6d70343a78', 42);",  # BLOB video, int title
    )
    with Snapshot.open(path) as snap:
        assert list(snap.segments()) == [SnapshotSegment(1, 10, 1, None, "42")]


def test_snapshot_is_not_modified(sample: Path) -> None:
    before_bytes = sample.read_bytes()
    before_stat = sample.stat()
    before_files = sorted(p.name for p in sample.parent.iterdir())
    with Snapshot.open(sample) as snap:
        list(snap.segments())
        snap.counts()
        snap.course_titles()
    after_stat = sample.stat()
    assert sample.read_bytes() == before_bytes
    assert after_stat.st_mtime_ns == before_stat.st_mtime_ns
    assert after_stat.st_size == before_stat.st_size
    assert sorted(p.name for p in sample.parent.iterdir()) == before_files


def test_snapshot_connection_is_read_only(sample: Path) -> None:
    with Snapshot.open(sample) as snap, pytest.raises(sqlite3.OperationalError, match="readonly"):
        snap._conn.execute("DELETE FROM segments")


def test_ids_that_only_look_numeric_are_no_ids(tmp_path: Path) -> None:
    """Text that passes a digit test but is no integer ("+-5", a superscript two) is
    counted as no id, as a REAL is, instead of stopping the plan with a traceback."""
    path = make_db(
        tmp_path / "snap.db",
        "CREATE TABLE courses (id, title); CREATE TABLE channels (id, courseid);"
        + "CREATE TABLE segments (id, channel_id, video, title);"
        + "INSERT INTO courses VALUES (1, 'c');"
        + "INSERT INTO channels VALUES (10, 1);"
        + "INSERT INTO segments VALUES ('+-5', 10, 'mp4:a', 't');"
        + "INSERT INTO segments VALUES ('²', 10, 'mp4:b', 't');"
        + "INSERT INTO segments VALUES (' 7 ', 10, 'mp4:c', 't');",
    )
    with Snapshot.open(path) as snap:
        assert sorted(snap.segments(), key=repr) == [
            SnapshotSegment(7, 10, 1, "mp4:c", "t"),
            SnapshotSegment(None, 10, 1, "mp4:a", "t"),
            SnapshotSegment(None, 10, 1, "mp4:b", "t"),
        ]


def test_unordered_segments_are_the_same_rows(sample: Path) -> None:
    with Snapshot.open(sample) as snap:
        ordered = list(snap.segments())
        assert sorted(snap.segments(ordered=False), key=repr) == sorted(ordered, key=repr)
