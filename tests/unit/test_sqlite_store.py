"""The SQLite state store: planning, the claim queue, outcomes, reads, locking, schema."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tfbulk.errors import BadInput, DiskError, StateLocked
from tfbulk.pipeline.plan import PlanRow
from tfbulk.state import (
    Attempted,
    Done,
    Failed,
    Job,
    Parked,
    PlanChanges,
    Retry,
    SegmentRecord,
    Validated,
)
from tfbulk.state.schema import SCHEMA_VERSION
from tfbulk.state.sqlite import SQLiteStore, _disk_error

NOW = 1_700_000_000.0
MD5 = "0123456789abcdef0123456789abcdef"
TITLES = {1: "Blues Rhythm 101", 2: "Jazz Soloing 102", 3: None}


def row(
    segment_id: int,
    course_id: int = 1,
    *,
    video: str | None = None,
    title: str | None = None,
    path: str | None = None,
    error: str | None = None,
) -> PlanRow:
    return PlanRow(
        segment_id=segment_id,
        course_id=course_id,
        channel_id=course_id * 10,
        video=video or f"mp4:c{course_id}/s{segment_id}",
        title=title or f"Lesson {segment_id}",
        path=None if error else (path or f"{course_id}/{segment_id}.mp4"),
        error=error,
    )


def rows() -> list[PlanRow]:
    """Deliberately not in (course, id) order."""
    return [row(21, 2), row(11, 1), row(30, 3), row(10, 1), row(20, 2), row(12, 1)]


def open_store(path: Path, *, lock: bool = True) -> SQLiteStore:
    return SQLiteStore.open(path, create=True, lock=lock)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "dest" / ".tfbulk" / "state.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SQLiteStore]:
    opened = open_store(db_path)
    yield opened
    opened.close()


def status(store: SQLiteStore) -> dict[int, str]:
    return {r.segment_id: r.status for r in store.records()}


def raw(path: Path, segment_id: int) -> dict[str, object]:
    """The committed row, read through a separate connection."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        found = conn.execute("SELECT * FROM segments WHERE id = ?", (segment_id,)).fetchone()
    finally:
        conn.close()
    assert found is not None
    return dict(found)


def claim_ids(store: SQLiteStore, limit: int = 100, now: float = NOW) -> list[int]:
    return [job.segment_id for job in store.claim(limit, now)]


def finish(store: SQLiteStore, segment_id: int, size: int, status: str = "success") -> None:
    store.record(Done(segment_id, status, size, MD5, '"etag"', NOW))
    store.flush()


# -- planning ----------------------------------------------------------------------


def test_plan_inserts_new_rows_as_pending(store: SQLiteStore) -> None:
    assert store.plan(rows(), TITLES) == PlanChanges(new=6, changed=0)
    assert store.records() == [
        SegmentRecord(sid, cid, f"Lesson {sid}", f"{cid}/{sid}.mp4", "pending", 0, None, None)
        for cid, sid in [(1, 10), (1, 11), (1, 12), (2, 20), (2, 21), (3, 30)]
    ]


def test_replan_same_rows_changes_nothing(store: SQLiteStore, db_path: Path) -> None:
    store.plan(rows(), TITLES)
    store.start_run()
    assert claim_ids(store, 1) == [10]
    finish(store, 10, 4096)
    before = raw(db_path, 10)
    assert store.plan(rows(), TITLES) == PlanChanges(new=0, changed=0)
    assert raw(db_path, 10) == before
    assert status(store)[10] == "success"


def test_plan_counts_new_rows_next_to_old_ones(store: SQLiteStore) -> None:
    store.plan(rows()[:3], TITLES)
    assert store.plan(rows(), TITLES) == PlanChanges(new=3, changed=0)


def test_changed_video_resets_success_and_asks_for_replace(
    store: SQLiteStore, db_path: Path
) -> None:
    store.plan(rows(), TITLES)
    store.start_run()
    assert claim_ids(store, 1) == [10]
    finish(store, 10, 4096)
    changed = [row(10, video="mp4:c1/s10-remastered") if r.segment_id == 10 else r for r in rows()]
    assert store.plan(changed, TITLES) == PlanChanges(new=0, changed=1)
    record = next(r for r in store.records() if r.segment_id == 10)
    assert (record.status, record.attempts, record.size) == ("pending", 0, None)
    assert raw(db_path, 10)["md5"] is None
    jobs = store.claim(1, NOW)
    assert [(j.segment_id, j.video, j.replace, j.known_size) for j in jobs] == [
        (10, "mp4:c1/s10-remastered", True, None)
    ]
    # The flag is cleared once the new video is down.
    finish(store, 10, 5000)
    assert raw(db_path, 10)["replace"] == 0


def test_changed_path_resets_status_without_replace(store: SQLiteStore) -> None:
    store.plan(rows(), TITLES)
    store.start_run()
    claim_ids(store, 1)
    finish(store, 10, 4096)
    moved = [row(10, path="elsewhere/10.mp4") if r.segment_id == 10 else r for r in rows()]
    assert store.plan(moved, TITLES) == PlanChanges(new=0, changed=1)
    jobs = store.claim(1, NOW)
    assert [(j.segment_id, j.path, j.replace) for j in jobs] == [(10, "elsewhere/10.mp4", False)]


def test_changed_title_alone_keeps_status(store: SQLiteStore, db_path: Path) -> None:
    store.plan(rows(), TITLES)
    store.start_run()
    claim_ids(store, 1)
    finish(store, 10, 4096)
    retitled = [row(10, title="New title") if r.segment_id == 10 else r for r in rows()]
    assert store.plan(retitled, TITLES) == PlanChanges(new=0, changed=1)
    record = next(r for r in store.records() if r.segment_id == 10)
    assert (record.status, record.title, record.attempts, record.size) == (
        "success",
        "New title",
        1,
        4096,
    )
    assert raw(db_path, 10)["md5"] == MD5
    assert raw(db_path, 10)["replace"] == 0
    assert 10 not in claim_ids(store)


def test_rows_with_error_are_planned_failed(store: SQLiteStore) -> None:
    refused = row(99, 1, error="refused: path '../x' climbs out of the destination with '..'")
    assert store.plan([*rows(), refused], TITLES) == PlanChanges(new=7, changed=0)
    failed = store.records(status="failed")
    assert failed == [
        SegmentRecord(99, 1, "Lesson 99", None, "failed", 0, None, refused.error),
    ]
    store.start_run()
    assert 99 not in claim_ids(store)
    # A refused row has no path: `retry` cannot make it downloadable.
    assert store.requeue_failed([], []) == 0


def test_fixed_refusal_is_planned_pending(store: SQLiteStore) -> None:
    store.plan([row(99, 1, error="refused: bad")], TITLES)
    assert store.plan([row(99, 1)], TITLES) == PlanChanges(new=0, changed=1)
    assert store.records() == [
        SegmentRecord(99, 1, "Lesson 99", "1/99.mp4", "pending", 0, None, None)
    ]


def test_duplicate_paths_raise_naming_the_path(store: SQLiteStore) -> None:
    clash = [row(1, path="same.mp4"), row(2), row(3, path="same.mp4")]
    with pytest.raises(BadInput) as info:
        store.plan(clash, TITLES)
    message = str(info.value)
    assert "same.mp4" in message
    assert "--path-template" in message
    assert "1" in message
    assert "3" in message


def test_duplicate_paths_write_nothing(db_path: Path) -> None:
    store = open_store(db_path)
    try:
        with pytest.raises(BadInput):
            store.plan([row(1, path="x.mp4"), row(2, path="x.mp4")], TITLES)
    finally:
        store.close()
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("SELECT count(*) FROM segments").fetchone() == (0,)
    finally:
        conn.close()


# -- the queue --------------------------------------------------------------------------


def test_claim_returns_jobs_in_course_then_segment_order(store: SQLiteStore) -> None:
    store.plan(rows(), TITLES)
    store.start_run()
    jobs = store.claim(100, NOW)
    assert [(j.course_id, j.segment_id) for j in jobs] == [
        (1, 10),
        (1, 11),
        (1, 12),
        (2, 20),
        (2, 21),
        (3, 30),
    ]
    assert set(status(store).values()) == {"processing"}
    assert jobs[0] == Job(
        segment_id=10,
        course_id=1,
        channel_id=10,
        video="mp4:c1/s10",
        title="Lesson 10",
        path="1/10.mp4",
        error=None,
        etag=None,
        last_modified=None,
        expected_size=None,
        known_size=None,
        run_attempts=0,
        last_kind=None,
        replace=False,
    )
    assert store.claim(100, NOW) == []


def test_claim_respects_limit(store: SQLiteStore) -> None:
    store.plan(rows(), TITLES)
    store.start_run()
    assert claim_ids(store, 2) == [10, 11]
    assert claim_ids(store, 3) == [12, 20, 21]
    assert status(store) == {
        10: "processing",
        11: "processing",
        12: "processing",
        20: "processing",
        21: "processing",
        30: "pending",
    }
    assert claim_ids(store, 3) == [30]
    assert claim_ids(store, 3) == []


def test_claim_only_in_scope(store: SQLiteStore) -> None:
    store.plan(rows(), TITLES)
    store.plan([row(20, 2), row(30, 3)], TITLES)
    store.start_run()
    assert claim_ids(store) == [20, 30]


def test_retry_waits_until_next_at(store: SQLiteStore) -> None:
    store.plan(rows(), TITLES)
    store.start_run()
    assert claim_ids(store, 1) == [10]
    store.record(Retry(10, "server", "HTTP 503", NOW + 30, restart=False))
    assert claim_ids(store, 100, NOW) == [11, 12, 20, 21, 30]
    assert store.next_due() == NOW + 30
    assert claim_ids(store, 100, NOW + 29.9) == []
    jobs = store.claim(100, NOW + 30)
    assert [(j.segment_id, j.run_attempts, j.last_kind, j.error) for j in jobs] == [
        (10, 1, "server", "HTTP 503")
    ]
    assert store.next_due() is None


def test_next_due_of_fresh_queue_is_now(store: SQLiteStore) -> None:
    store.plan(rows(), TITLES)
    store.start_run()
    assert store.next_due() == 0


def test_start_run_recovers_a_crashed_run(db_path: Path) -> None:
    store = open_store(db_path)
    store.plan(rows(), TITLES)
    store.start_run()
    assert claim_ids(store, 3) == [10, 11, 12]
    store.close()  # a crash: nothing recorded for the claimed jobs

    store = open_store(db_path)
    try:
        store.plan(rows(), TITLES)
        assert status(store)[10] == "processing"
        store.start_run()
        assert set(status(store).values()) == {"pending"}
        assert claim_ids(store) == [10, 11, 12, 20, 21, 30]
    finally:
        store.close()


def test_start_run_resets_run_counters_and_delays(store: SQLiteStore, db_path: Path) -> None:
    store.plan(rows(), TITLES)
    store.start_run()
    claim_ids(store, 1)
    store.record(Retry(10, "network", "reset", NOW + 1000, restart=False))
    store.flush()
    store.start_run()
    jobs = store.claim(1, NOW)
    assert [(j.segment_id, j.run_attempts, j.last_kind) for j in jobs] == [(10, 0, None)]
    assert raw(db_path, 10)["attempts"] == 1  # the lifetime count is kept


# -- outcomes ---------------------------------------------------------------------------


@pytest.fixture
def claimed(store: SQLiteStore) -> SQLiteStore:
    store.plan(rows(), TITLES)
    store.start_run()
    assert claim_ids(store) == [10, 11, 12, 20, 21, 30]
    return store


def test_outcomes_are_buffered_until_flush(claimed: SQLiteStore, db_path: Path) -> None:
    claimed.record(Done(10, "success", 4096, MD5, None, NOW))
    assert raw(db_path, 10)["status"] == "processing"
    claimed.flush()
    assert raw(db_path, 10)["status"] == "success"


def test_done_success_and_skipped(claimed: SQLiteStore, db_path: Path) -> None:
    claimed.record(Done(10, "success", 4096, MD5, '"abc"', NOW + 1))
    claimed.record(Done(11, "skipped", 2048, None, None, NOW + 2))
    claimed.flush()
    ten, eleven = raw(db_path, 10), raw(db_path, 11)
    assert {k: ten[k] for k in ("status", "attempts", "size", "md5", "etag", "finished_at")} == {
        "status": "success",
        "attempts": 1,
        "size": 4096,
        "md5": MD5,
        "etag": '"abc"',
        "finished_at": NOW + 1,
    }
    assert {k: eleven[k] for k in ("status", "attempts", "size", "md5", "error")} == {
        "status": "skipped",
        "attempts": 0,
        "size": 2048,
        "md5": None,
        "error": None,
    }


def test_done_keeps_validated_etag_when_none_given(claimed: SQLiteStore, db_path: Path) -> None:
    claimed.record(Validated(10, '"v1"', "Mon, 01 Jan 2024 00:00:00 GMT", 4096))
    claimed.record(Done(10, "success", 4096, MD5, None, NOW))
    claimed.flush()
    assert raw(db_path, 10)["etag"] == '"v1"'


def test_failed_outcome(claimed: SQLiteStore, db_path: Path) -> None:
    claimed.record(Failed(10, "gone", "HTTP 404 Not Found", attempted=True, finished_at=NOW))
    claimed.record(Failed(11, None, "refused: symlink", attempted=False, finished_at=NOW))
    claimed.flush()
    assert [(r.segment_id, r.attempts, r.error) for r in claimed.records(status="failed")] == [
        (10, 1, "HTTP 404 Not Found"),
        (11, 0, "refused: symlink"),
    ]
    assert raw(db_path, 10)["last_kind"] == "gone"
    assert raw(db_path, 11)["last_kind"] is None


def test_attempted_counts_and_keeps_processing(claimed: SQLiteStore, db_path: Path) -> None:
    claimed.record(Attempted(10, "forbidden", "HTTP 403"))
    claimed.flush()
    ten = raw(db_path, 10)
    assert (ten["status"], ten["attempts"], ten["run_attempts"], ten["error"]) == (
        "processing",
        1,
        1,
        "HTTP 403",
    )
    assert ten["last_kind"] == "forbidden"


@pytest.mark.parametrize("restart", [False, True])
def test_retry_outcome(claimed: SQLiteStore, db_path: Path, restart: bool) -> None:
    claimed.record(Validated(10, '"v1"', "Mon, 01 Jan 2024 00:00:00 GMT", 4096))
    claimed.record(Retry(10, "network", "connection reset", NOW + 5, restart=restart))
    claimed.flush()
    ten = raw(db_path, 10)
    assert (ten["status"], ten["attempts"], ten["run_attempts"], ten["next_at"]) == (
        "pending",
        1,
        1,
        NOW + 5,
    )
    assert (ten["last_kind"], ten["error"]) == ("network", "connection reset")
    expected = (None, None) if restart else ('"v1"', 4096)
    assert (ten["etag"], ten["expected_size"]) == expected
    assert ten["last_modified"] == "Mon, 01 Jan 2024 00:00:00 GMT"


def test_validated_is_handed_back_on_next_claim(claimed: SQLiteStore) -> None:
    claimed.record(Validated(10, '"v1"', "Mon, 01 Jan 2024 00:00:00 GMT", 4096))
    claimed.record(Parked(10))
    jobs = claimed.claim(1, NOW)
    assert [(j.segment_id, j.etag, j.last_modified, j.expected_size) for j in jobs] == [
        (10, '"v1"', "Mon, 01 Jan 2024 00:00:00 GMT", 4096)
    ]


def test_parked_goes_back_to_pending_uncounted(claimed: SQLiteStore, db_path: Path) -> None:
    claimed.record(Parked(10))
    claimed.flush()
    ten = raw(db_path, 10)
    assert (ten["status"], ten["attempts"], ten["run_attempts"]) == ("pending", 0, 0)


def test_outcomes_apply_in_order(claimed: SQLiteStore, db_path: Path) -> None:
    claimed.record(Attempted(10, "forbidden", "HTTP 403"))
    claimed.record(Retry(10, "forbidden", "HTTP 403 again", NOW, restart=False))
    claimed.record(Done(10, "success", 4096, MD5, None, NOW))
    claimed.flush()
    ten = raw(db_path, 10)
    assert (ten["status"], ten["attempts"], ten["run_attempts"], ten["error"]) == (
        "success",
        3,
        3,
        None,
    )


# -- reading ----------------------------------------------------------------------------


def test_summary_counts_per_course_and_bytes(claimed: SQLiteStore) -> None:
    claimed.record(Done(10, "success", 1000, MD5, None, NOW))
    claimed.record(Done(11, "skipped", 200, None, None, NOW))
    # A failed row that still carries a size (it succeeded once) adds no bytes.
    claimed.record(Done(12, "success", 50_000, MD5, None, NOW))
    claimed.record(Failed(12, "gone", "HTTP 404", attempted=True, finished_at=NOW))
    claimed.record(Done(20, "success", 30, MD5, None, NOW))
    claimed.record(Parked(21))
    summary = claimed.summary()
    by_course = {c.course_id: c for c in summary.courses}
    assert sorted(by_course) == [1, 2, 3]
    one = by_course[1]
    assert (one.title, one.total, one.success, one.skipped, one.failed, one.bytes) == (
        "Blues Rhythm 101",
        3,
        1,
        1,
        1,
        1200,
    )
    assert one.done == 2
    two = by_course[2]
    assert (two.title, two.total, two.success, two.pending, two.bytes) == (
        "Jazz Soloing 102",
        2,
        1,
        1,
        30,
    )
    three = by_course[3]
    assert (three.title, three.total, three.processing, three.bytes) == (None, 1, 1, 0)
    assert summary.as_json() == {
        "total": 6,
        "success": 2,
        "skipped": 1,
        "failed": 1,
        "pending": 1,
        "processing": 1,
        "bytes": 1230,
        "courses": [
            {
                "id": 1,
                "title": "Blues Rhythm 101",
                "total": 3,
                "success": 1,
                "skipped": 1,
                "failed": 1,
                "pending": 0,
                "processing": 0,
                "bytes": 1200,
            },
            {
                "id": 2,
                "title": "Jazz Soloing 102",
                "total": 2,
                "success": 1,
                "skipped": 0,
                "failed": 0,
                "pending": 1,
                "processing": 0,
                "bytes": 30,
            },
            {
                "id": 3,
                "title": None,
                "total": 1,
                "success": 0,
                "skipped": 0,
                "failed": 0,
                "pending": 0,
                "processing": 1,
                "bytes": 0,
            },
        ],
    }
    assert claimed.summary(course=2).total == 2
    assert [c.course_id for c in claimed.summary(course=2).courses] == [2]


def test_summary_scoped_and_whole(store: SQLiteStore) -> None:
    store.plan(rows(), TITLES)
    store.plan([row(10), row(20, 2)], TITLES)
    assert store.summary().total == 2
    assert store.summary(scoped=False).total == 6


def test_records_filters(claimed: SQLiteStore) -> None:
    claimed.record(Failed(12, "gone", "HTTP 404", attempted=True, finished_at=NOW))
    claimed.record(Failed(21, "client", "HTTP 400", attempted=True, finished_at=NOW))
    claimed.record(Done(20, "success", 5, None, None, NOW))
    assert [r.segment_id for r in claimed.records(status="failed")] == [12, 21]
    assert [r.segment_id for r in claimed.records(status="failed", course=2)] == [21]
    assert [r.segment_id for r in claimed.records(course=2)] == [20, 21]
    assert [r.segment_id for r in claimed.records(limit=2)] == [10, 11]
    assert claimed.records(status="skipped") == []


@pytest.fixture
def three_failed(claimed: SQLiteStore) -> SQLiteStore:
    for sid in (11, 20, 30):
        claimed.record(Failed(sid, "gone", "HTTP 404", attempted=True, finished_at=NOW))
    claimed.record(Done(10, "success", 5, None, None, NOW))
    claimed.flush()
    return claimed


def test_requeue_all_failed(three_failed: SQLiteStore, db_path: Path) -> None:
    assert three_failed.requeue_failed([], []) == 3
    assert status(three_failed) == {
        10: "success",
        11: "pending",
        12: "processing",
        20: "pending",
        21: "processing",
        30: "pending",
    }
    eleven = raw(db_path, 11)
    assert (eleven["error"], eleven["next_at"], eleven["run_attempts"]) == (None, 0, 0)
    assert eleven["attempts"] == 1
    assert three_failed.requeue_failed([], []) == 0


def test_requeue_failed_by_course(three_failed: SQLiteStore) -> None:
    assert three_failed.requeue_failed([2, 99], []) == 1
    assert [r.segment_id for r in three_failed.records(status="failed")] == [11, 30]


def test_requeue_failed_by_segment(three_failed: SQLiteStore) -> None:
    assert three_failed.requeue_failed([], [30, 10]) == 1
    assert [r.segment_id for r in three_failed.records(status="failed")] == [11, 20]


def test_requeue_failed_by_course_or_segment(three_failed: SQLiteStore) -> None:
    assert three_failed.requeue_failed([1], [30]) == 2
    assert [r.segment_id for r in three_failed.records(status="failed")] == [20]


# -- the file, the lock and the schema ---------------------------------------------------


def test_open_without_create_needs_an_existing_db(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no state DB at"):
        SQLiteStore.open(tmp_path / "missing.db", create=False, lock=False)
    assert not (tmp_path / "missing.db").exists()


def test_second_locked_store_is_refused(db_path: Path) -> None:
    first = open_store(db_path)
    try:
        with pytest.raises(StateLocked, match="another tfbulk run"):
            open_store(db_path)
        reader = open_store(db_path, lock=False)  # status/failed read without the lock
        reader.close()
    finally:
        first.close()
    again = open_store(db_path)
    again.close()


@pytest.mark.parametrize("umask", [0o077, 0o000, 0o022])
def test_db_file_is_created_0644(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "new" / "state.db"
    old = os.umask(umask)
    try:
        store = open_store(path)
    finally:
        os.umask(old)
    store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755


def _set_schema_version(path: Path, version: int) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    finally:
        conn.close()


def test_schema_version_is_recorded(db_path: Path) -> None:
    open_store(db_path).close()
    conn = sqlite3.connect(db_path)
    try:
        value = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    finally:
        conn.close()
    assert value == (str(SCHEMA_VERSION),)


def test_newer_schema_is_refused(db_path: Path) -> None:
    open_store(db_path).close()
    _set_schema_version(db_path, SCHEMA_VERSION + 1)
    with pytest.raises(BadInput) as info:
        SQLiteStore.open(db_path, create=False, lock=False)
    message = str(info.value)
    assert str(db_path) in message
    assert f"schema version {SCHEMA_VERSION + 1}" in message
    assert "upgrade tfbulk" in message


def test_newer_schema_refusal_releases_the_lock(db_path: Path) -> None:
    open_store(db_path).close()
    _set_schema_version(db_path, SCHEMA_VERSION + 1)
    for _ in range(2):
        with pytest.raises(BadInput):
            open_store(db_path)


def test_garbage_db_is_refused_and_unlocked(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not a database at all" * 100)
    for _ in range(2):
        with pytest.raises(BadInput, match="unreadable"):
            open_store(db_path)


def test_plan_of_100000_rows(store: SQLiteStore) -> None:
    big = [
        PlanRow(sid, 1 + sid // 100, None, f"mp4:v/{sid}", None, f"{sid}.mp4", None)
        for sid in range(100_000)
    ]
    assert store.plan(big, {}) == PlanChanges(new=100_000, changed=0)
    summary = store.summary()
    assert summary.total == 100_000
    assert summary.total_of("pending") == 100_000
    assert len(summary.courses) == 1000
    assert store.plan(big, {}) == PlanChanges(new=0, changed=0)
    store.start_run()
    assert claim_ids(store, 3) == [0, 1, 2]


def test_a_full_disk_under_the_state_db_names_the_path_and_the_free_space(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    error = _disk_error(sqlite3.OperationalError("database or disk is full"), path)
    assert isinstance(error, DiskError)
    assert str(path) in str(error) and "bytes free" in str(error)
    other = sqlite3.OperationalError("no such table: segments")
    assert _disk_error(other, path) is other, "only disk problems stop the run"
