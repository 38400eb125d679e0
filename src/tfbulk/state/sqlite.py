"""The embedded state store: one SQLite file in WAL mode, one writer, batched commits.

The SQLite dialect of `state.sql`. One run at a time holds the store (a lock file), so a
claim is a plain `UPDATE … RETURNING` and the scope is a temporary table of the planned
rows. Outcomes are buffered and committed together (at most every flush, and before every
claim), so keeping state costs a transaction per batch rather than one per file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import operator
import os
import shutil
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from tfbulk.errors import BadInput, DiskError
from tfbulk.pipeline.plan import PlanQuery, PlanRow
from tfbulk.state import Health, Job, PlanChanges, WorkerStatus
from tfbulk.state.lock import RunLock
from tfbulk.state.schema import SQLITE_STEPS, migrate
from tfbulk.state.sql import JOB_COLUMNS, Params, Row, SQLStore, jobs_from

CACHE_KIB = 512  # page cache per schema: memory stays flat however long the queue
STREAM_BATCH = 1000

# The planned rows of this connection: the scope, and what planning upserts from.
_SCOPE = """CREATE TEMP TABLE scope (id INTEGER PRIMARY KEY, course_id INTEGER,
  channel_id INTEGER, video TEXT, title TEXT, path TEXT, error TEXT)"""
_LOAD = "INSERT OR REPLACE INTO temp.scope VALUES (?, ?, ?, ?, ?, ?, ?)"  # the last one wins
_LOAD_FROM = "INSERT OR REPLACE INTO temp.scope"
_LOAD_IDS = "INSERT OR IGNORE INTO temp.scope (id)"
_IN_SCOPE = "s.id IN (SELECT id FROM temp.scope)"
_FILL = """
INSERT OR REPLACE INTO segments (id, course_id, channel_id, video, title, path, error, status,
                                 planned_at, updated_at)
SELECT *, CASE WHEN error IS NULL THEN 'pending' ELSE 'failed' END, :now, :now
FROM ({rows})"""  # OR REPLACE: of a snapshot's rows with one id the last wins, as in scope
_COUNTS_TRIGGER = (
    "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'counts_inserted'"
)
_COUNTS_OF_SEGMENTS = """
INSERT INTO counts (course_id, status, n, bytes)
SELECT course_id, status, count(*), coalesce(sum(size), 0) FROM segments GROUP BY 1, 2"""
_COUNTED_COURSES = "SELECT DISTINCT course_id FROM counts"
_ID_ONLY = operator.itemgetter(slice(0, 1))  # (segment_id,) of a PlanRow
_CLAIM = f"""
UPDATE segments SET status = 'processing', started_at = :now, updated_at = :now
WHERE id IN (
  SELECT s.id FROM segments s
  WHERE s.status = 'pending' AND s.next_at <= :now AND {{scope}}
  ORDER BY s.course_id, s.id LIMIT :limit)
RETURNING {JOB_COLUMNS}
"""


class SQLiteStore(SQLStore):
    """The state DB of one destination; `lock=True` makes this process the only run."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock: RunLock | None) -> None:
        super().__init__()
        self.path = path
        self.where = str(path)
        self._conn = conn
        self._lock = lock
        self._scoped = False
        self._whole = False  # the scope is every stored row: no filter needed

    @classmethod
    def open(cls, path: Path, *, create: bool, lock: bool, readonly: bool = False) -> SQLiteStore:
        """Open (and on first use create, or upgrade) the DB; with `lock`, exit 3 if taken.

        `readonly` (doctor) changes nothing, not even an old schema: see `health()`.
        """
        if not path.exists() and not create:
            raise BadInput(f"no state DB at {path}; run `tfbulk run` first, or pass --state/--dest")
        if create:
            _create_private_file(path)
        run_lock = RunLock(path.with_name(path.name + ".lock")) if lock else None
        if run_lock:
            run_lock.acquire()
        try:
            conn = _connect(path, readonly=readonly)
        except sqlite3.DatabaseError as exc:
            if run_lock:
                run_lock.release()
            raise BadInput(f"state DB {path} is unreadable: {exc}") from None
        store = cls(path, conn, run_lock)
        try:
            if not readonly:
                migrate(store, SQLITE_STEPS)
        except (sqlite3.DatabaseError, BadInput) as exc:
            store.close_quietly()
            if isinstance(exc, BadInput):
                raise
            raise BadInput(f"state DB {path} is unreadable: {exc}") from None
        return store

    def close(self) -> None:
        self._flush_if_possible()
        self.close_quietly()

    def close_quietly(self) -> None:
        """Close without recording anything (the DB may be unreadable)."""
        self._conn.close()
        if self._lock:
            self._lock.release()

    # -- migration (state.schema) ---------------------------------------------------------

    def schema_version(self) -> int:
        found = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if not found:
            return 0
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    @contextmanager
    def migration(self) -> Iterator[None]:
        with self._transaction():
            self._conn.execute(
                'CREATE TABLE IF NOT EXISTS "meta" ("key" TEXT PRIMARY KEY, "value" TEXT)'
            )
            yield

    def run_script(self, script: str) -> None:
        for statement in _statements(script):
            self._conn.execute(statement)

    def set_schema_version(self, version: int) -> None:
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(version),),
        )

    def health(self) -> Health:
        """Integrity, schema version and the run holding the lock, for `doctor`."""
        try:
            integrity = str(self._conn.execute("PRAGMA integrity_check").fetchone()[0])
            version = self.schema_version()
        except sqlite3.DatabaseError as exc:
            raise BadInput(f"{self.path}: {exc}") from None
        holder = RunLock(self.path.with_name(self.path.name + ".lock")).holder()
        return Health(integrity=integrity, schema_version=version, holder=holder)

    # -- planning -----------------------------------------------------------------------

    def plan(
        self,
        rows: Iterable[PlanRow] | PlanQuery,
        titles: Mapping[int, str | None],
        *,
        distinct_paths: bool = False,
    ) -> PlanChanges:
        """Upsert the planned rows and make them this connection's scope, atomically;
        `distinct_paths` says no two rows can share a path (nothing to look for)."""
        now = time.time()
        with self._attached(rows), self._transaction():
            before = self._stored_rows()
            if isinstance(rows, PlanQuery) and self._is_empty():
                courses = self._fill(rows, now)
                written = self._scope_rows = self._stored_rows()
            else:
                # Through the scope table even into an empty store: one INSERT … SELECT
                # runs the counts trigger several times faster than a statement per row.
                courses = self._load_scope(rows)
                written = self._upsert("temp.scope", now)
                self._scope_rows = self._count("temp.scope")
            stored = self._stored_rows()
            self._whole = self._scope_rows == stored
            self._upsert_courses(courses, titles)
            if not distinct_paths:
                self._refuse_shared_paths()
        self._scoped = True
        return PlanChanges(new=stored - before, changed=written - (stored - before))

    def _is_empty(self) -> bool:
        return not self._conn.execute("SELECT EXISTS (SELECT 1 FROM segments)").fetchone()[0]

    def _fill(self, query: PlanQuery, now: float) -> list[int]:
        """Plan into an empty store straight from the snapshot; the courses planned.

        The scope is the whole store, so no scope table; the counts trigger is dropped
        for the insert and the counts summed once after it (the transaction restores
        the trigger if anything fails). A million rows in about two thirds of the time.
        """
        self._scoped = self._whole = False
        self._conn.execute("DROP TABLE IF EXISTS temp.scope")
        (trigger,) = self._conn.execute(_COUNTS_TRIGGER).fetchone()
        self._conn.execute("DROP TRIGGER counts_inserted")
        self._conn.execute(_FILL.format(rows=query.rows), {"now": now})
        self._conn.execute("DELETE FROM counts")
        self._conn.execute(_COUNTS_OF_SEGMENTS)
        self._conn.execute(trigger)
        return [course_id for (course_id,) in self._conn.execute(_COUNTED_COURSES)]

    def _count(self, table: str) -> int:
        return int(self._conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def scope_planned(self, rows: Iterable[PlanRow] | PlanQuery) -> None:
        """Scope without writing (dry runs): the ids are only kept in a temp table.

        A scope of exactly the stored rows is the whole store: its summary is the counts.
        One deferred transaction around the load: it writes only the temp table (no lock
        on the store a running run holds), and a million inserts commit once, not each.
        """
        with self._attached(rows):
            self._conn.execute("BEGIN")
            try:
                self._load_scope(rows, ids_only=True)
            finally:
                self._conn.execute("COMMIT")
        scoped = self._count("temp.scope")
        self._whole = scoped == self._stored_rows() and scoped == self._count(
            "temp.scope t JOIN segments s ON s.id = t.id"
        )
        self._scoped = True

    @contextmanager
    def _attached(self, rows: Iterable[PlanRow] | PlanQuery) -> Iterator[None]:
        """The snapshot a PlanQuery reads, attached (read-only) while it is planned."""
        if not isinstance(rows, PlanQuery):
            yield
            return
        self._conn.execute("ATTACH DATABASE ? AS snap", (rows.uri,))
        try:
            yield
        finally:
            self._conn.execute("DETACH DATABASE snap")

    def _load_scope(
        self, rows: Iterable[PlanRow] | PlanQuery, *, ids_only: bool = False
    ) -> list[int]:
        """Replace the scope with `rows` (or only their ids); the courses they belong to.

        The rows are bound as they come (a PlanRow is a tuple in the table's order): a
        million of them cost the binding and nothing else; those of a PlanQuery not even
        that (SQLite reads them from the attached snapshot)."""
        self._scoped = self._whole = False
        self._scope_rows = None
        self._conn.execute("DROP TABLE IF EXISTS temp.scope")
        self._conn.execute(_SCOPE)
        if isinstance(rows, PlanQuery):
            insert, select = (_LOAD_IDS, rows.ids) if ids_only else (_LOAD_FROM, rows.rows)
            self._conn.execute(f"{insert} {select}")
        elif ids_only:
            self._conn.executemany(f"{_LOAD_IDS} VALUES (?)", map(_ID_ONLY, rows))
        else:
            self._conn.executemany(_LOAD, rows)
        if ids_only:
            return []
        courses = self._conn.execute("SELECT DISTINCT course_id FROM temp.scope")
        return [course_id for (course_id,) in courses]

    # -- the queue ----------------------------------------------------------------------

    def start_run(self) -> None:
        """Recover from a killed run and reset this run's attempt counters.

        Only pending rows can be claimed (`retry` and a changed plan reset the others as
        they make them pending), so a rerun of a mostly finished queue rewrites few rows.
        """
        with self._transaction():
            self._conn.execute("UPDATE segments SET status = 'pending' WHERE status = 'processing'")
            self._conn.execute(
                "UPDATE segments AS s SET run_attempts = 0, last_kind = NULL, next_at = 0 "
                "WHERE s.status = 'pending' "
                "AND (s.run_attempts > 0 OR s.next_at > 0 OR s.last_kind IS NOT NULL) "
                f"AND {self._scope_sql() or 'TRUE'}"
            )

    def claim(self, limit: int, now: float) -> list[Job]:
        """Mark up to `limit` due pending segments `processing` and return them in order."""
        self.flush()
        sql = _CLAIM.format(scope=self._scope_sql() or "TRUE")
        with self._transaction():
            rows = self._conn.execute(sql, {"now": now, "limit": limit}).fetchall()
        return jobs_from(rows)

    def next_due(self) -> float | None:
        """When the earliest pending segment in scope may be claimed (None: none pending)."""
        self.flush()
        row = self._conn.execute(
            "SELECT min(s.next_at) FROM segments s WHERE s.status = 'pending' "
            f"AND {self._scope_sql() or 'TRUE'}"
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def flush(self) -> None:
        """Commit every buffered outcome in one transaction, in the order recorded.

        If the disk is full the transaction rolls back, the outcomes stay buffered for a
        later try, and DiskError tells the engine to stop.
        """
        if not self._buffer:
            return
        batch = list(self._buffer)
        with self._transaction():
            self._apply(batch, time.time(), None)
        for _ in batch:
            self._buffer.popleft()

    def _flush_if_possible(self) -> None:
        """Reads show committed state even when a full disk blocks the last outcomes."""
        with contextlib.suppress(DiskError):
            self.flush()

    @property
    def worker_id(self) -> str | None:
        """A SQLite store has one run at a time, no worker ids."""
        return None

    def workers(self) -> list[WorkerStatus]:
        """One run at a time holds a SQLite store: there is no worker list to show."""
        return []

    # -- dialect hooks (state.sql) --------------------------------------------------------

    def _query(self, sql: str, params: Params) -> list[Row]:
        return self._conn.execute(sql, params).fetchall()

    def _execute(self, sql: str, params: Params) -> int:
        return self._conn.execute(sql, params).rowcount

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
            self._apply(list(self._buffer), time.time(), None)
        except sqlite3.OperationalError:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        try:
            yield
        finally:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")

    def _writing(self) -> contextlib.AbstractContextManager[None]:
        return self._transaction()

    def _stream(self, sql: str, params: Params) -> Iterator[Row]:
        self._flush_if_possible()
        cursor = self._conn.execute(sql, params)
        while rows := cursor.fetchmany(STREAM_BATCH):
            yield from rows

    def _scope_sql(self) -> str | None:
        return _IN_SCOPE if self._scoped and not self._whole else None

    def _any(self, column: str, name: str) -> str:
        return f"{column} IN (SELECT value FROM json_each(:{name}))"

    def _ids(self, ids: list[int]) -> object:
        return json.dumps(ids)

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


def _statements(script: str) -> Iterator[str]:
    """A migration step's statements (a trigger's body keeps its own semicolons)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip():
        yield pending.strip()


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


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    uri = f"file:{quote(str(path.resolve()))}?mode={'ro' if readonly else 'rw'}"
    conn = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None, check_same_thread=False)
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    conn.execute(f"PRAGMA temp.cache_size = -{CACHE_KIB}")
    return conn
