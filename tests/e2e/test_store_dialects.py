"""One SQL store, two dialects: the same behaviour on SQLite and on a real PostgreSQL.

The status counts are kept by triggers; every test here checks them against a scan of
`segments` through a separate connection, after every kind of change a run can make.
Databases written by the previous schema (tests/vectors/state-v1.*.sql) upgrade in place.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tfbulk.errors import BadInput
from tfbulk.pipeline.plan import PlanRow
from tfbulk.settings import Sharing
from tfbulk.state import (
    Attempted,
    Done,
    Failed,
    Parked,
    PlanChanges,
    Retry,
    Status,
    Store,
    Validated,
    open_store,
)
from tfbulk.state.schema import SCHEMA_VERSION

NOW = 1_700_000_000.0
VECTORS = Path(__file__).parent.parent / "vectors"
Scan = Callable[[], dict[tuple[int, str], tuple[int, int]]]


def row(segment_id: int, course_id: int = 1, video: str | None = None) -> PlanRow:
    return PlanRow(
        segment_id=segment_id,
        course_id=course_id,
        channel_id=course_id * 10,
        video=video or f"mp4:c{course_id}/s{segment_id}",
        title=f"Lesson {segment_id}",
        path=f"{course_id}/{segment_id}.mp4",
        error=None,
    )


def catalogue() -> list[PlanRow]:
    return [row(sid, cid) for cid in (1, 2, 3) for sid in range(cid * 100, cid * 100 + 6)]


class Backend:
    """A state DB of one dialect: its `--state` value and a scan that bypasses the store."""

    def __init__(self, spec: str, dest: Path, scan: Scan, raw: Callable[[str], None]) -> None:
        self.spec = spec
        self.dest = dest
        self.scan = scan
        self.raw = raw

    def open(self, *, worker: bool = True) -> Store:
        return open_store(self.spec, create=True, lock=worker, dest=self.dest, sharing=Sharing())


def _sqlite_scan(path: Path) -> Scan:
    def scan() -> dict[tuple[int, str], tuple[int, int]]:
        with sqlite3.connect(path) as conn:
            rows = conn.execute(
                "SELECT course_id, status, count(*), coalesce(sum(size), 0) FROM segments "
                "GROUP BY 1, 2"
            ).fetchall()
        return {(c, s): (n, b) for c, s, n, b in rows}

    return scan


def _sqlite_raw(path: Path) -> Callable[[str], None]:
    def run(script: str) -> None:
        with sqlite3.connect(path) as conn:
            conn.executescript(script)

    return run


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> Backend:
    path = tmp_path / "dest" / ".tfbulk" / "state.db"
    (tmp_path / "dest" / ".tfbulk").mkdir(parents=True)
    return Backend(str(path), tmp_path / "dest", _sqlite_scan(path), _sqlite_raw(path))


@pytest.fixture
def pg_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    url: str = request.getfixturevalue("pg_url")
    import psycopg

    def scan() -> dict[tuple[int, str], tuple[int, int]]:
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT course_id, status, count(*), coalesce(sum(size), 0) "
                "FROM tfbulk.segments GROUP BY 1, 2"
            ).fetchall()
        return {(c, s): (n, int(b)) for c, s, n, b in rows}

    def raw(script: str) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(script.encode())

    (tmp_path / "dest" / ".tfbulk").mkdir(parents=True)
    return Backend(url, tmp_path / "dest", scan, raw)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> Backend:
    name = "pg_backend" if request.param == "postgres" else "sqlite_backend"
    backend: Backend = request.getfixturevalue(name)
    return backend


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    opened = backend.open()
    yield opened
    opened.close()


def counted(store: Store) -> dict[tuple[int, str], int]:
    """The summary (read from the counts) in the scan's shape."""
    return {
        (course.course_id, status.value): getattr(course, status.value)
        for course in store.summary(scoped=False).courses
        for status in Status
        if getattr(course, status.value)
    }


def assert_counts_match(store: Store, backend: Backend) -> None:
    scanned = backend.scan()
    assert counted(store) == {key: n for key, (n, _) in scanned.items()}
    summary = store.summary(scoped=False)
    done_bytes = sum(b for (_, status), (_, b) in scanned.items() if Status(status).done)
    assert summary.total_of("bytes") == done_bytes


def test_counts_follow_every_transition(store: Store, backend: Backend) -> None:
    assert store.plan(catalogue(), {1: "One", 2: "Two", 3: None}) == PlanChanges(18, 0)
    store.start_run()
    assert_counts_match(store, backend)
    jobs = store.claim(5, NOW)
    assert [j.segment_id for j in jobs] == [100, 101, 102, 103, 104]
    assert_counts_match(store, backend)
    store.record(Validated(100, '"e"', None, 10))
    store.record(Done(100, Status.SUCCESS, 4096, "0" * 32, '"e"', NOW))
    store.record(Done(101, Status.SKIPPED, 1000, None, None, NOW))
    store.record(Attempted(102, "timeout", "slow"))
    store.record(Failed(102, "forbidden", "403", True, NOW))
    store.record(Retry(103, "timeout", "slow", NOW, False))
    store.record(Parked(104))
    store.flush()
    assert_counts_match(store, backend)
    assert store.requeue({100: "size differs"}) == 1
    assert store.requeue_failed([], [102]) == 1
    assert_counts_match(store, backend)
    moved = [
        row(105, 1, video="mp4:c1/s105-new") if r.segment_id == 105 else r for r in catalogue()
    ]
    assert store.plan(moved, {1: "One", 2: "Two", 3: None}) == PlanChanges(0, 1)
    assert_counts_match(store, backend)
    summary = store.summary()
    assert summary.total == 18
    assert [c.title for c in summary.courses] == ["One", "Two", None]


def test_a_partial_scope_is_counted_by_its_rows(store: Store, backend: Backend) -> None:
    store.plan(catalogue(), {})
    store.plan([r for r in catalogue() if r.course_id == 2], {})
    store.start_run()
    for job in store.claim(2, NOW):
        store.record(Done(job.segment_id, Status.SUCCESS, 10, None, None, NOW))
    scoped = store.summary()
    assert (scoped.total, scoped.total_of("success")) == (6, 2)
    assert [c.course_id for c in scoped.courses] == [2]
    assert store.summary(scoped=False).total == 18
    assert store.summary(scoped=False, course=3).total == 6
    assert_counts_match(store, backend)


def test_changes_made_outside_the_store_are_counted(store: Store, backend: Backend) -> None:
    """The benchmark marks rows done with plain SQL, as an older run would have."""
    store.plan(catalogue(), {})
    prefix = "tfbulk." if backend.spec.startswith("postgres") else ""
    backend.raw(f"UPDATE {prefix}segments SET status = 'success', size = 7 WHERE course_id = 3")
    backend.raw(f"DELETE FROM {prefix}segments WHERE id = 100")
    assert_counts_match(store, backend)
    assert store.summary(scoped=False).total_of("bytes") == 6 * 7


def test_readers_see_the_counts_of_a_running_worker(backend: Backend) -> None:
    worker = backend.open()
    try:
        worker.plan(catalogue(), {})
        worker.start_run()
        for job in worker.claim(3, NOW):
            worker.record(Done(job.segment_id, Status.SUCCESS, 5, None, None, NOW))
        worker.flush()
        reader = open_store(backend.spec, create=False, lock=False)
        try:
            summary = reader.summary(scoped=False)
            assert (summary.total_of("success"), summary.total_of("bytes")) == (3, 15)
        finally:
            reader.close()
    finally:
        worker.close()


# -- upgrading a version-1 database in place ------------------------------------------------


def _v1_rows() -> str:
    values = ", ".join(
        f"({sid}, {1 + sid % 3}, NULL, 'mp4:v/{sid}', 'L{sid}', '{sid}.mp4', "
        f"'{('success', 'failed', 'pending', 'processing')[sid % 4]}', "
        f"{100 * sid if sid % 4 == 0 else 'NULL'})"
        for sid in range(1, 41)
    )
    return (
        "INSERT INTO courses (id, title) VALUES (1, 'A'), (2, 'B'), (3, 'C');"
        "INSERT INTO segments (id, course_id, channel_id, video, title, path, status, size) "
        f"VALUES {values};"
    )


def test_a_version_1_database_upgrades_in_place(backend: Backend) -> None:
    dialect = "postgres" if backend.spec.startswith("postgres") else "sqlite"
    backend.raw((VECTORS / f"state-v1.{dialect}.sql").read_text() + _v1_rows())
    before = backend.scan()
    reader = open_store(backend.spec, create=False, lock=False)
    try:
        assert reader.health().schema_version == SCHEMA_VERSION
        assert_counts_match(reader, backend)
        assert Counter(r.status for r in reader.records()) == Counter(
            {"success": 10, "failed": 10, "pending": 10, "processing": 10}
        )
    finally:
        reader.close()
    assert backend.scan() == before, "upgrading changed no row"
    store = backend.open()
    try:
        same = [
            PlanRow(sid, 1 + sid % 3, None, f"mp4:v/{sid}", f"L{sid}", f"{sid}.mp4", None)
            for sid in range(1, 41)
        ]
        assert store.plan(same, {1: "A", 2: "B", 3: "C"}) == PlanChanges(0, 0)
        store.start_run()
        jobs = store.claim(100, NOW)
        # SQLite's start_run hands back what a killed run held; PostgreSQL waits for a lease.
        assert len(jobs) == (10 if dialect == "postgres" else 20)
        for job in jobs:
            store.record(Done(job.segment_id, Status.SUCCESS, 1, None, None, NOW))
        store.flush()
        assert_counts_match(store, backend)
    finally:
        store.close()


def test_a_newer_schema_is_refused_by_both(backend: Backend) -> None:
    backend.open().close()
    prefix = "tfbulk." if backend.spec.startswith("postgres") else ""
    backend.raw(f"UPDATE {prefix}meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(BadInput, match="schema version 99, newer than this tfbulk"):
        open_store(backend.spec, create=False, lock=False)


def test_doctor_reads_an_old_database_without_upgrading_it(backend: Backend) -> None:
    dialect = "postgres" if backend.spec.startswith("postgres") else "sqlite"
    backend.raw((VECTORS / f"state-v1.{dialect}.sql").read_text() + _v1_rows())
    store = open_store(backend.spec, create=False, lock=False, readonly=True)
    try:
        assert store.health().schema_version == 1
        assert {r.segment_id for r in store.finished()} == set(range(4, 41, 4))
    finally:
        store.close()
    again = open_store(backend.spec, create=False, lock=False, readonly=True)
    try:
        assert again.health().schema_version == 1
    finally:
        again.close()


def test_postgres_placeholders_leave_casts_and_literals_alone() -> None:
    pytest.importorskip("psycopg")
    from tfbulk.state.postgres import PostgresStore

    sql = PostgresStore.sql("SELECT sum(n)::bigint, ':x' FROM t WHERE id = :id AND me = :me")
    assert sql == "SELECT sum(n)::bigint, ':x' FROM t WHERE id = %(id)s AND me = %(me)s"


def test_a_dry_run_scope_is_counted_whether_whole_or_part(backend: Backend) -> None:
    worker = backend.open()
    worker.plan(catalogue(), {})
    worker.close()
    reader = open_store(backend.spec, create=False, lock=False)
    try:
        reader.scope_planned(catalogue())
        assert reader.summary().total == 18
        part = [r for r in catalogue() if r.course_id != 1] + [row(999, 9)]
        reader.scope_planned(part)
        summary = reader.summary()
        assert (summary.total, [c.course_id for c in summary.courses]) == (12, [2, 3])
        reader.scope_planned([r for r in catalogue() if r.segment_id != 100] + [row(999, 9)])
        assert reader.summary().total == 17, "as many rows as stored, but not the same ones"
    finally:
        reader.close()


def test_s3_uploads_live_in_the_queue_schema_and_an_old_public_table_moves(pg_url: str) -> None:
    """On PostgreSQL the uploads table sits with the queue's tables (a shared database's
    `public` is other applications'); the one an earlier tfbulk left in `public` is moved
    there with its rows, so uploads in flight resume instead of being orphaned."""
    import psycopg

    from tfbulk.pipeline.s3resume import Recorded, UploadLog

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE public.s3_uploads (object_key TEXT PRIMARY KEY, upload_id TEXT "
            "NOT NULL, head BYTEA NOT NULL, part_etags TEXT NOT NULL, stored BIGINT NOT NULL, "
            "updated DOUBLE PRECISION NOT NULL)"
        )
        conn.execute("INSERT INTO public.s3_uploads VALUES ('k', 'up-1', 'h', '[\"e\"]', 5, 1)")
    log = UploadLog(pg_url)
    assert log.find("k") == Recorded("up-1", b"h", ["e"], 5)
    log.save("k2", Recorded("up-2", b"h", ['"e"'], 1))
    log.close()
    with psycopg.connect(pg_url) as conn:
        where = conn.execute(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 's3_uploads'"
        ).fetchall()
        assert where == [("tfbulk",)]
        assert conn.execute("SELECT count(*) FROM tfbulk.s3_uploads").fetchone() == (2,)


def test_workers_starting_together_make_the_uploads_table_one_at_a_time(pg_url: str) -> None:
    """Two workers' CREATE TABLE IF NOT EXISTS at the same moment: one fails on
    PostgreSQL's catalogue (pg_type's unique key). The table is made under the schema's
    advisory lock: held here, the upload log waits for it, then makes the table."""
    import threading

    import psycopg

    from tests.conftest import wait_for
    from tfbulk.pipeline.s3resume import UploadLog
    from tfbulk.state.schema import MIGRATE_LOCK

    opened: list[UploadLog] = []
    with psycopg.connect(pg_url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        opener = threading.Thread(target=lambda: opened.append(UploadLog(pg_url)))
        opener.start()
        wait_for(lambda: _waiting_on_advisory_lock(pg_url), what="the upload log to wait")
        assert not _has_uploads_table(pg_url)
    opener.join(timeout=60)
    assert opened and _has_uploads_table(pg_url)
    opened[0].close()


def test_the_upload_log_reconnects_when_its_connection_is_lost(pg_url: str) -> None:
    """A PostgreSQL restart (here: its backend terminated) between two parts: the next
    record opens a new connection instead of stopping the worker."""
    import psycopg

    from tfbulk.pipeline.s3resume import Recorded, UploadLog

    log = UploadLog(pg_url)
    log.save("k", Recorded("up-1", b"h", ['"e"'], 5))
    with psycopg.connect(pg_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    assert killed == [(True,)]
    assert log.find("k") == Recorded("up-1", b"h", ['"e"'], 5)
    log.close()


def _waiting_on_advisory_lock(pg_url: str) -> bool:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).fetchone()
    return bool(row and row[0])


def _has_uploads_table(pg_url: str) -> bool:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass('tfbulk.s3_uploads')").fetchone()
    return row is not None and row[0] is not None
