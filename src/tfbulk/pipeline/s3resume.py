"""Multipart uploads under way, kept in the state DB: what a killed run resumes from.

One table of its own, created if missing by whoever opens it first (SQLite or PostgreSQL,
the same state DB as --state), so it needs nothing from the store's migrations:

    s3_uploads(object_key TEXT PRIMARY KEY, upload_id TEXT, head BLOB/BYTEA,
               part_etags TEXT (JSON list, part 1 first), stored BIGINT, updated REAL,
               body_md5 TEXT, part_sums TEXT (JSON list of [size, MD5 hex], part 1 first))

A row is written when the upload is created (so that a kill during its first part
leaves no upload nobody knows of), after each part S3 accepted, and deleted when the
upload is completed or aborted. `stored` is where a resumed download continues (a part
boundary). Once the last part is up, `body_md5` is the whole body's MD5: a run killed
before the completion checks it against the source's ETag and completes, with nothing
fetched again.
`part_sums` are what each part held, so that a run continuing the upload can check the
stored parts against the source (s3recheck.py). A table made before a column existed gets
it added when opened (its rows' new columns are NULL: parts that cannot be checked).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

from tfbulk.errors import StateUnavailable
from tfbulk.state.schema import MIGRATE_LOCK, PG_SCHEMA
from tfbulk.state.url import is_postgres_url, redact_url

_COLUMNS = "object_key, upload_id, head, part_etags, stored, updated, body_md5, part_sums"
_ADDED = {"body_md5": "TEXT", "part_sums": "TEXT"}  # newer than the table: added to an older one


def _schema(blob: str) -> str:
    added = "".join(f", {name} {kind}" for name, kind in _ADDED.items())
    return (
        "CREATE TABLE IF NOT EXISTS s3_uploads (object_key TEXT PRIMARY KEY, "
        f"upload_id TEXT NOT NULL, head {blob} NOT NULL, part_etags TEXT NOT NULL, "
        f"stored BIGINT NOT NULL, updated DOUBLE PRECISION NOT NULL{added})"
    )


@dataclass(frozen=True)
class Recorded:
    """An upload with finished parts: its ID, the body's first bytes, the parts' ETags,
    the bytes they hold, (once they hold the whole body) its MD5, and each part's size and
    MD5 (None from an older tfbulk)."""

    upload_id: str
    head: bytes
    etags: list[str]
    stored: int
    body_md5: str | None = None
    sums: list[tuple[int, str]] | None = None


class UploadLog:
    """The s3_uploads table of one state DB; its calls may come from any thread."""

    def __init__(self, spec: str) -> None:
        self._lock = threading.Lock()
        self._spec = spec
        self._ready = False  # set up: a lost connection may be opened again
        if is_postgres_url(spec):
            self._mark = "%s"
            self._conn: Any = self._pg_connect()
            self._pg_setup()
            self._ready = True
        else:
            self._conn = sqlite3.connect(
                spec, timeout=30, isolation_level=None, check_same_thread=False
            )
            self._mark = "?"
            self._run("PRAGMA busy_timeout = 30000")
            self._run(_schema("BLOB"))
            self._add_missing_sqlite_columns()

    def find(self, key: str) -> Recorded | None:
        rows = self._run(f"SELECT {_COLUMNS} FROM s3_uploads WHERE object_key = {self._mark}", key)
        return _recorded(rows[0]) if rows else None

    def keys(self) -> set[str]:
        return {row[0] for row in self._run("SELECT object_key FROM s3_uploads")}

    def save(self, key: str, upload: Recorded) -> None:
        marks = ", ".join([self._mark] * 8)
        self._run(
            f"INSERT INTO s3_uploads ({_COLUMNS}) VALUES ({marks}) ON CONFLICT (object_key) "
            "DO UPDATE SET upload_id = excluded.upload_id, head = excluded.head, "
            "part_etags = excluded.part_etags, stored = excluded.stored, "
            "updated = excluded.updated, body_md5 = excluded.body_md5, "
            "part_sums = excluded.part_sums",
            key,
            upload.upload_id,
            upload.head,
            json.dumps(upload.etags),
            upload.stored,
            time.time(),
            upload.body_md5,
            json.dumps(upload.sums) if upload.sums is not None else None,
        )

    def forget(self, key: str, upload_id: str) -> None:
        """Drop the row of this upload (not of a newer one to the same key)."""
        where = f"object_key = {self._mark} AND upload_id = {self._mark}"
        self._run(f"DELETE FROM s3_uploads WHERE {where}", key, upload_id)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _pg_setup(self) -> None:
        """The table, made or upgraded by one worker at a time (two workers starting
        together would both create it, and one fail on PostgreSQL's catalogue)."""
        import psycopg

        try:
            with self._conn.transaction():
                self._run("SELECT pg_advisory_xact_lock(%s)", MIGRATE_LOCK)
                self._into_queue_schema()
                self._run(_schema("BYTEA"))
                for name, kind in _ADDED.items():
                    self._run(f"ALTER TABLE s3_uploads ADD COLUMN IF NOT EXISTS {name} {kind}")
        except psycopg.OperationalError:
            raise StateUnavailable(self._lost()) from None

    def _into_queue_schema(self) -> None:
        """Beside the queue's tables, in their schema (a shared database keeps other
        applications' tables in `public`). Moves the table tfbulk 0.x left in `public`,
        recognised by its columns, so uploads in flight are resumed, not orphaned."""
        self._run(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}")
        self._run(f"SET search_path TO {PG_SCHEMA}")
        ours, old = self._run(
            "SELECT to_regclass(%s), to_regclass('public.s3_uploads')", f"{PG_SCHEMA}.s3_uploads"
        )[0]
        if ours is None and old is not None and self._looks_like_ours("public"):
            self._run(f"ALTER TABLE public.s3_uploads SET SCHEMA {PG_SCHEMA}")

    def _looks_like_ours(self, schema: str) -> bool:
        rows = self._run(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 's3_uploads'",
            schema,
        )
        return set(_COLUMNS.split(", ")) - set(_ADDED) <= {row[0] for row in rows}

    def _add_missing_sqlite_columns(self) -> None:
        """A table from an older tfbulk: its missing columns added (another process
        opening it at the same moment may have added one first)."""
        present = {row[1] for row in self._run("PRAGMA table_info(s3_uploads)")}
        for name, kind in _ADDED.items():
            if name not in present:
                try:
                    self._run(f"ALTER TABLE s3_uploads ADD COLUMN {name} {kind}")
                except sqlite3.OperationalError as exc:
                    if "duplicate column" not in str(exc):
                        raise

    def _run(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._mark == "?":
                return _rows(self._conn.execute(sql, params))
            import psycopg

            try:
                return _rows(self._conn.execute(sql, params))
            except psycopg.OperationalError:
                if not (self._ready and self._conn.closed):
                    raise StateUnavailable(self._lost()) from None
            self._conn = self._pg_connect()  # the server restarted: every statement is
            self._conn.execute(f"SET search_path TO {PG_SCHEMA}")  # safe to run again
            try:
                return _rows(self._conn.execute(sql, params))
            except psycopg.OperationalError:
                raise StateUnavailable(self._lost()) from None

    def _pg_connect(self) -> Any:
        """A connection to the queue's database, or exit 75 naming it (no password)."""
        import psycopg

        try:
            return psycopg.connect(self._spec, autocommit=True)
        except psycopg.OperationalError:
            raise StateUnavailable(self._lost()) from None

    def _lost(self) -> str:
        return (
            f"cannot reach the state DB {redact_url(self._spec)} to record S3 uploads; "
            "what was not recorded is still to do: run again"
        )


def _rows(cursor: Any) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in cursor.fetchall()] if cursor.description else []


def _recorded(row: tuple[Any, ...]) -> Recorded:
    sums = [(int(size), str(md5)) for size, md5 in json.loads(row[7])] if row[7] else None
    return Recorded(row[1], bytes(row[2]), json.loads(row[3]), int(row[4]), row[6], sums)
