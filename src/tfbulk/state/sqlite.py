"""The embedded state store: one SQLite file in WAL mode, one writer, batched commits.

Outcomes are buffered and committed together (at most every flush, and before every
claim), so keeping state costs a transaction per batch rather than one per file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from urllib.parse import quote

from sqlite_utils import Database

from tfbulk.errors import BadInput, DiskError
from tfbulk.pipeline.plan import PlanRow
from tfbulk.state import (
    Attempted,
    Done,
    Failed,
    Job,
    Outcome,
    Parked,
    PlanChanges,
    Retry,
    SegmentRecord,
    Summary,
    Validated,
    WorkerStatus,
    summary_from,
)
from tfbulk.state.lock import RunLock

SCHEMA_VERSION = 1
PLAN_BATCH = 1000
CACHE_KIB = 512  # page cache per schema: memory stays flat however long the queue

_SEGMENT_COLUMNS = {
    "id": int,
    "course_id": int,
    "channel_id": int,
    "video": str,
    "title": str,
    "path": str,
    "status": str,
    "attempts": int,
    "run_attempts": int,
    "last_kind": str,
    "error": str,
    "next_at": float,
    "replace": int,
    "etag": str,
    "last_modified": str,
    "expected_size": int,
    "size": int,
    "md5": str,
    "planned_at": float,
    "started_at": float,
    "finished_at": float,
    "updated_at": float,
}

_CHANGED = "segments.video IS NOT excluded.video OR segments.path IS NOT excluded.path"
_UPSERT = f"""
INSERT INTO segments (id, course_id, channel_id, video, title, path, status, error,
                      planned_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(id) DO UPDATE SET
  course_id = excluded.course_id,
  channel_id = excluded.channel_id,
  title = excluded.title,
  replace = CASE WHEN segments.video IS NOT excluded.video THEN 1 ELSE segments.replace END,
  status = CASE WHEN {_CHANGED} THEN excluded.status ELSE segments.status END,
  error = CASE WHEN {_CHANGED} THEN excluded.error ELSE segments.error END,
  attempts = CASE WHEN {_CHANGED} THEN 0 ELSE segments.attempts END,
  size = CASE WHEN {_CHANGED} THEN NULL ELSE segments.size END,
  md5 = CASE WHEN {_CHANGED} THEN NULL ELSE segments.md5 END,
  etag = CASE WHEN {_CHANGED} THEN NULL ELSE segments.etag END,
  last_modified = CASE WHEN {_CHANGED} THEN NULL ELSE segments.last_modified END,
  expected_size = CASE WHEN {_CHANGED} THEN NULL ELSE segments.expected_size END,
  video = excluded.video,
  path = excluded.path,
  updated_at = excluded.updated_at
WHERE {_CHANGED} OR segments.title IS NOT excluded.title
   OR segments.course_id IS NOT excluded.course_id
   OR segments.channel_id IS NOT excluded.channel_id
"""

_RECORD_COLUMNS = "s.id, s.course_id, s.title, s.path, s.status, s.attempts, s.size, s.error, s.md5"
_CLAIM = """
UPDATE segments SET status = 'processing', started_at = :now, updated_at = :now
WHERE id IN (
  SELECT s.id FROM segments s
  WHERE s.status = 'pending' AND s.next_at <= :now AND s.id IN (SELECT id FROM temp.scope)
  ORDER BY s.course_id, s.id LIMIT :limit)
RETURNING id, course_id, channel_id, video, title, path, error, etag, last_modified,
          expected_size, size, run_attempts, last_kind, replace, attempts
"""

_APPLY: dict[type, str] = {
    Validated: "UPDATE segments SET etag = ?, last_modified = ?, expected_size = ? WHERE id = ?",
    Attempted: """UPDATE segments SET attempts = attempts + 1, run_attempts = run_attempts + 1,
        last_kind = ?, error = ?, updated_at = ? WHERE id = ?""",
    Retry: """UPDATE segments SET status = 'pending', attempts = attempts + 1,
        run_attempts = run_attempts + 1, last_kind = ?, error = ?, next_at = ?, updated_at = ?,
        etag = CASE WHEN ? THEN NULL ELSE etag END,
        expected_size = CASE WHEN ? THEN NULL ELSE expected_size END WHERE id = ?""",
    Done: """UPDATE segments SET status = ?, size = ?, md5 = ?, etag = coalesce(?, etag),
        attempts = attempts + (? = 'success'), run_attempts = run_attempts + (? = 'success'),
        error = NULL, replace = 0, finished_at = ?, updated_at = ? WHERE id = ?""",
    Failed: """UPDATE segments SET status = 'failed', last_kind = coalesce(?, last_kind),
        error = ?, attempts = attempts + ?, run_attempts = run_attempts + ?,
        finished_at = ?, updated_at = ? WHERE id = ?""",
    Parked: "UPDATE segments SET status = 'pending', updated_at = ? WHERE id = ?",
}


def _params(outcome: Outcome, now: float) -> tuple[object, ...]:
    """The parameters of `_APPLY[type(outcome)]`, in order."""
    match outcome:
        case Validated(sid, etag, modified, expected):
            return (etag, modified, expected, sid)
        case Attempted(sid, kind, error):
            return (kind, error, now, sid)
        case Retry(sid, kind, error, next_at, restart):
            return (kind, error, next_at, now, restart, restart, sid)
        case Done(sid, status, size, md5, etag, finished):
            return (status, size, md5, etag, status, status, finished, now, sid)
        case Failed(sid, kind, error, attempted, finished):
            return (kind, error, int(attempted), int(attempted), finished, now, sid)
        case Parked(sid):
            return (now, sid)
    raise TypeError(f"unknown outcome {outcome!r}")


class SQLiteStore:
    """The state DB of one destination; `lock=True` makes this process the only run."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock: RunLock | None) -> None:
        self.path = path
        self._conn = conn
        self._db = Database(conn)
        self._lock = lock
        self._buffer: deque[Outcome] = deque()
        self._scoped = False

    @classmethod
    def open(cls, path: Path, *, create: bool, lock: bool) -> SQLiteStore:
        """Open (and on first use create) the DB; with `lock`, fail with exit 3 if taken."""
        if not path.exists() and not create:
            raise BadInput(f"no state DB at {path}; run `tfbulk run` first, or pass --state/--dest")
        if create:
            _create_private_file(path)
        run_lock = RunLock(path.with_name(path.name + ".lock")) if lock else None
        if run_lock:
            run_lock.acquire()
        try:
            conn = _connect(path)
        except sqlite3.DatabaseError as exc:
            if run_lock:
                run_lock.release()
            raise BadInput(f"state DB {path} is unreadable: {exc}") from None
        try:
            _migrate(Database(conn), path)
        except (sqlite3.DatabaseError, BadInput) as exc:
            conn.close()
            if run_lock:
                run_lock.release()
            if isinstance(exc, BadInput):
                raise
            raise BadInput(f"state DB {path} is unreadable: {exc}") from None
        return cls(path, conn, run_lock)

    def close(self) -> None:
        self._flush_if_possible()
        self._conn.close()
        if self._lock:
            self._lock.release()

    # -- planning -----------------------------------------------------------------

    def plan(self, rows: Iterable[PlanRow], titles: Mapping[int, str | None]) -> PlanChanges:
        """Upsert the planned rows and make them this connection's scope, atomically."""
        now = time.time()
        with self._transaction():
            self._new_scope()
            courses: set[int] = set()
            for batch in _batched(rows, PLAN_BATCH):
                self._conn.executemany(
                    _UPSERT,
                    [
                        (
                            r.segment_id,
                            r.course_id,
                            r.channel_id,
                            r.video,
                            r.title,
                            r.path,
                            "failed" if r.error else "pending",
                            r.error,
                            now,
                            now,
                        )
                        for r in batch
                    ],
                )
                self._conn.executemany(
                    "INSERT OR IGNORE INTO temp.scope (id) VALUES (?)",
                    [(r.segment_id,) for r in batch],
                )
                courses.update(r.course_id for r in batch)
            self._conn.executemany(
                "INSERT INTO courses (id, title) VALUES (?, ?) "
                "ON CONFLICT(id) DO UPDATE SET title = excluded.title "
                "WHERE courses.title IS NOT excluded.title",
                [(cid, titles.get(cid)) for cid in sorted(courses)],
            )
            self._refuse_shared_paths()
        self._scoped = True
        new, changed = self._conn.execute(
            "SELECT count(*) FILTER (WHERE planned_at = :now), "
            "count(*) FILTER (WHERE planned_at != :now AND updated_at = :now) "
            "FROM segments WHERE id IN (SELECT id FROM temp.scope)",
            {"now": now},
        ).fetchone()
        return PlanChanges(new=new, changed=changed)

    def scope_planned(self, rows: Iterable[PlanRow]) -> None:
        """Scope without writing (dry runs): the ids are only kept in a temp table."""
        self._new_scope()
        for batch in _batched(rows, PLAN_BATCH):
            self._conn.executemany(
                "INSERT OR IGNORE INTO temp.scope (id) VALUES (?)",
                [(r.segment_id,) for r in batch],
            )
        self._scoped = True

    def _new_scope(self) -> None:
        self._scoped = False
        self._conn.execute("DROP TABLE IF EXISTS temp.scope")
        self._conn.execute("CREATE TEMP TABLE scope (id INTEGER PRIMARY KEY)")

    def _refuse_shared_paths(self) -> None:
        clash = self._conn.execute(
            "SELECT path, count(*), min(id), max(id) FROM segments "
            "WHERE path IS NOT NULL AND id IN (SELECT id FROM temp.scope) "
            "GROUP BY path HAVING count(*) > 1 LIMIT 1"
        ).fetchone()
        if clash:
            path, count, first, last = clash
            raise BadInput(
                f"--path-template maps {count} segments (e.g. {first} and {last}) to the same "
                f"file {path}; include {{segment_id}} in it"
            )

    # -- the queue ----------------------------------------------------------------

    def start_run(self) -> None:
        """Recover from a killed run and reset this run's attempt counters."""
        with self._transaction():
            self._conn.execute("UPDATE segments SET status = 'pending' WHERE status = 'processing'")
            self._conn.execute(
                "UPDATE segments SET run_attempts = 0, last_kind = NULL, next_at = 0 "
                "WHERE (run_attempts > 0 OR next_at > 0 OR last_kind IS NOT NULL) "
                "AND id IN (SELECT id FROM temp.scope)"
            )

    def claim(self, limit: int, now: float) -> list[Job]:
        """Mark up to `limit` due pending segments `processing` and return them in order."""
        self.flush()
        with self._transaction():
            rows = self._conn.execute(_CLAIM, {"now": now, "limit": limit}).fetchall()
        jobs = [
            Job(
                segment_id=r[0],
                course_id=r[1],
                channel_id=r[2],
                video=r[3],
                title=r[4],
                path=r[5],
                error=r[6],
                etag=r[7],
                last_modified=r[8],
                expected_size=r[9],
                known_size=r[10],
                run_attempts=r[11],
                last_kind=r[12],
                replace=bool(r[13]),
                attempts=r[14],
            )
            for r in rows
        ]
        jobs.sort(key=lambda job: (job.course_id, job.segment_id))
        return jobs

    def next_due(self) -> float | None:
        """When the earliest pending segment in scope may be claimed (None: none pending)."""
        self.flush()
        row = self._conn.execute(
            "SELECT min(next_at) FROM segments WHERE status = 'pending' "
            "AND id IN (SELECT id FROM temp.scope)"
        ).fetchone()
        return row[0]

    def record(self, outcome: Outcome) -> None:
        """Buffer an outcome; safe to call from the event loop while a flush runs."""
        self._buffer.append(outcome)

    def flush(self) -> None:
        """Commit every buffered outcome in one transaction, in the order recorded.

        If the disk is full the transaction rolls back, the outcomes stay buffered for a
        later try, and DiskError tells the engine to stop.
        """
        if not self._buffer:
            return
        now = time.time()
        batch = list(self._buffer)
        with self._transaction():
            for outcome in batch:
                self._conn.execute(_APPLY[type(outcome)], _params(outcome, now))
        for _ in batch:
            self._buffer.popleft()

    def _flush_if_possible(self) -> None:
        """Reads show committed state even when a full disk blocks the last outcomes."""
        with contextlib.suppress(DiskError):
            self.flush()

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Reads inside see every recorded outcome, even those a full disk kept out.

        Outcomes that could not be committed are applied in a transaction that is only
        read and then rolled back (the changes stay in memory), so the summary of a run
        stopped by a full disk counts what the next run will find, not the last commit.
        """
        self._flush_if_possible()
        if not self._buffer:
            yield
            return
        try:
            self._conn.execute("BEGIN")
            now = time.time()
            for outcome in self._buffer:
                self._conn.execute(_APPLY[type(outcome)], _params(outcome, now))
        except sqlite3.OperationalError:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        try:
            yield
        finally:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")

    # -- reading --------------------------------------------------------------------

    def summary(self, *, scoped: bool = True, course: int | None = None) -> Summary:
        """Counts per course and status: of this run's scope, or of the whole DB."""
        where, params = self._filter(scoped=scoped, course=course)
        with self._reading():
            rows = self._conn.execute(
                "SELECT s.course_id, c.title, s.status, count(*), coalesce(sum(s.size), 0) "
                f"FROM segments s LEFT JOIN courses c ON c.id = s.course_id {where} "
                "GROUP BY s.course_id, s.status ORDER BY s.course_id",
                params,
            ).fetchall()
        return summary_from(rows)

    def records(
        self,
        *,
        course: int | None = None,
        status: str | None = None,
        scoped: bool = False,
        limit: int = -1,
    ) -> list[SegmentRecord]:
        """Segments in (course, id) order, filtered; `status --course` and `failed` show these."""
        where, params = self._filter(scoped=scoped, course=course)
        if status:
            where = f"{where} {'AND' if where else 'WHERE'} s.status = ?"
            params = (*params, status)
        with self._reading():
            rows = self._conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM segments s {where} "
                "ORDER BY s.course_id, s.id LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [SegmentRecord(*row) for row in rows]

    def finished(self, *, course: int | None = None) -> Iterator[SegmentRecord]:
        """Every `success`/`skipped` segment, streamed (100,000 rows never sit in memory)."""
        self._flush_if_possible()
        where, params = self._filter(scoped=False, course=course)
        where = f"{where} {'AND' if where else 'WHERE'} s.status IN ('success', 'skipped')"
        cursor = self._conn.execute(
            f"SELECT {_RECORD_COLUMNS} FROM segments s {where} ORDER BY s.course_id, s.id", params
        )
        while rows := cursor.fetchmany(1000):
            yield from (SegmentRecord(*row) for row in rows)

    def requeue(self, reasons: Mapping[int, str]) -> int:
        """Back to pending with the reason, replacing whatever is at the final path."""
        with self._transaction():
            self._conn.executemany(
                "UPDATE segments SET status = 'pending', replace = 1, error = ?, size = NULL, "
                "md5 = NULL, run_attempts = 0, last_kind = NULL, next_at = 0 WHERE id = ?",
                [(reason, sid) for sid, reason in reasons.items()],
            )
        return len(reasons)

    def requeue_failed(self, courses: Iterable[int], segments: Iterable[int]) -> int:
        """`tfbulk retry`: failed → pending (all, or only those courses/segments)."""
        courses, segments = list(courses), list(segments)
        where = "status = 'failed' AND path IS NOT NULL"
        params: list[int] = []
        if courses or segments:
            marks = lambda ids: ",".join("?" * len(ids)) or "NULL"  # noqa: E731
            where += f" AND (course_id IN ({marks(courses)}) OR id IN ({marks(segments)}))"
            params = courses + segments
        with self._transaction():
            cursor = self._conn.execute(
                "UPDATE segments SET status = 'pending', run_attempts = 0, last_kind = NULL, "
                f"next_at = 0, error = NULL WHERE {where}",
                params,
            )
        return cursor.rowcount

    @property
    def worker_id(self) -> str | None:
        """A SQLite store has one run at a time, no worker ids."""
        return None

    def workers(self) -> list[WorkerStatus]:
        """One run at a time holds a SQLite store: there is no worker list to show."""
        return []

    def _filter(self, *, scoped: bool, course: int | None) -> tuple[str, tuple[object, ...]]:
        clauses: list[str] = []
        params: tuple[object, ...] = ()
        if scoped and self._scoped:
            clauses.append("s.id IN (SELECT id FROM temp.scope)")
        if course is not None:
            clauses.append("s.course_id = ?")
            params = (course,)
        return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One IMMEDIATE transaction; a full disk surfaces as DiskError, never half-applied."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise _disk_error(exc, self.path) from exc


def _disk_error(exc: sqlite3.OperationalError, path: Path) -> Exception:
    """A full or read-only disk under the state DB stops the run like a full destination."""
    message = str(exc)
    if "full" in message or "readonly" in message or "disk I/O" in message:
        free = shutil.disk_usage(path.parent).free
        return DiskError(
            f"cannot write the state DB {path}: {message} ({free:,} bytes free on that file "
            "system); free some space or fix permissions, then run again to resume"
        )
    return exc


def _create_private_file(path: Path) -> None:
    """Create the DB's folder (0755) and file (0644) so it is never world-writable; a
    path that cannot hold it (read-only, no permission, a folder or file in the way) is
    exit 2 naming the path and the cause."""
    folder = path.parent
    try:
        if not folder.exists():
            folder.mkdir(parents=True, mode=0o755)
            folder.chmod(0o755)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
            path.chmod(0o644)
        elif path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "a folder is in the way")
    except OSError as exc:
        raise BadInput(
            f"cannot create the state DB {path}: {exc.strerror or exc}; "
            "pass --state PATH on a writable disk, or fix the permissions"
        ) from None


def _connect(path: Path) -> sqlite3.Connection:
    uri = f"file:{quote(str(path.resolve()))}?mode=rw"
    conn = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    conn.execute(f"PRAGMA temp.cache_size = -{CACHE_KIB}")
    return conn


def _migrate(db: Database, path: Path) -> None:
    """Create the schema on first use; refuse a DB from a newer tfbulk."""
    db["meta"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise BadInput(
            f"state DB {path} has schema version {version}, newer than this tfbulk "
            f"({SCHEMA_VERSION}); upgrade tfbulk"
        )
    if version == SCHEMA_VERSION:
        return
    db["courses"].create({"id": int, "title": str}, pk="id", if_not_exists=True)
    db["segments"].create(
        _SEGMENT_COLUMNS,
        pk="id",
        not_null={"course_id", "video", "status", "attempts", "run_attempts", "next_at", "replace"},
        defaults={
            "status": "pending",
            "attempts": 0,
            "run_attempts": 0,
            "next_at": 0,
            "replace": 0,
        },
        if_not_exists=True,
    )
    db["segments"].create_index(["status", "course_id", "id"], if_not_exists=True)
    db["segments"].create_index(["course_id", "status"], if_not_exists=True)
    db["segments"].create_index(["path"], if_not_exists=True)
    db["meta"].upsert({"key": "schema_version", "value": str(SCHEMA_VERSION)}, pk="key")


def _batched(rows: Iterable[PlanRow], size: int) -> Iterator[list[PlanRow]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch
