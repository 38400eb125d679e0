"""The pool holds a fixed number of segments: a long queue costs no more memory."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.conftest import Workspace


def write_big_snapshot(path: Path, courses: int, per_course: int) -> None:
    """Rows generated inside SQLite, so the test process itself stays small."""
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as conn:
        conn.executescript(
            f"""
            CREATE TABLE courses (id INTEGER PRIMARY KEY, title TEXT);
            CREATE TABLE channels (id INTEGER PRIMARY KEY, courseid INTEGER);
            CREATE TABLE segments (id INTEGER PRIMARY KEY, channel_id INTEGER, video TEXT);
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {courses})
            INSERT INTO courses SELECT i, 'Course ' || i FROM n;
            INSERT INTO channels SELECT id, id FROM courses;
            WITH RECURSIVE n(i) AS (
                SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {courses * per_course - 1})
            INSERT INTO segments
            SELECT 100000 + i, 1 + i / {per_course}, 'mp4:course/lesson_' || i FROM n;
            """
        )


def peak_rss(ws: Workspace, segments: int) -> tuple[int, dict]:
    write_big_snapshot(ws.snapshot, 10, segments // 10)
    result = ws.run("--state", str(ws.root / f"state-{segments}.db"), "--max-time", "1", "--json")
    assert result.code in (0, 75), result.stderr
    return result.json["peak_rss_bytes"], result.json


def test_100k_pending_cost_no_more_memory_than_1k(ws: Workspace) -> None:
    small, _ = peak_rss(ws, 1_000)
    large, data = peak_rss(ws, 100_000)
    assert data["total"] == 100_000 and data["pending"] > 90_000
    assert data["processing"] == 0
    assert large - small < 4 * 1024 * 1024, (
        f"1k: {small / 2**20:.1f} MB, 100k: {large / 2**20:.1f} MB"
    )
