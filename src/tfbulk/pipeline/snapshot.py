"""The catalogue snapshot: opened read-only, its schema checked, its segments streamed.

Segments are streamed (in (course, segment) order when per-course limits need it) so a
plan of a million rows never sits in memory.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from tfbulk.errors import BadInput

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "courses": ("id", "title"),
    "channels": ("id", "courseid"),
    "segments": ("id", "channel_id", "video"),
}
SQLITE_MAGIC = b"SQLite format 3\x00"


class SnapshotSegment(NamedTuple):
    """One row of `segments`, joined to its course through its channel."""

    segment_id: int | None  # None: the row's id is not an integer (skipped, counted)
    channel_id: int | None
    course_id: int | None
    video: str | None
    title: str | None


# What `Snapshot.segments` yields: a SnapshotSegment's fields, as the cursor returns them.
SnapshotRow = tuple[int | None, int | None, int | None, str | None, str | None]


@dataclass(frozen=True, slots=True)
class SnapshotCounts:
    courses: int
    channels: int
    segments: int


class Snapshot:
    """A read-only view of one snapshot file."""

    def __init__(self, path: Path, conn: sqlite3.Connection, title_column: str | None) -> None:
        self.path = path
        self._conn = conn
        self._title_column = title_column
        self._plain: bool | None = None  # no value of another type (asked once: read-only)

    @classmethod
    def open(cls, path: Path) -> Snapshot:
        """Open and validate; every refusal is a BadInput naming the file and the problem."""
        _check_file(path)
        try:
            conn = sqlite3.connect(_read_only(path), uri=True)
            conn.execute("PRAGMA cache_size = -512")
            columns = _columns(conn)
        except sqlite3.DatabaseError as exc:
            raise BadInput(f"snapshot {path} cannot be read as SQLite: {exc}") from None
        _check_schema(path, columns)
        segment_columns = columns["segments"]
        title = next((c for c in ("title", "name") if c in segment_columns), None)
        return cls(path, conn, title)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def counts(self) -> SnapshotCounts:
        one = self._conn.execute
        return SnapshotCounts(
            courses=one("SELECT count(*) FROM courses").fetchone()[0],
            channels=one("SELECT count(*) FROM channels").fetchone()[0],
            segments=one("SELECT count(*) FROM segments").fetchone()[0],
        )

    def course_titles(self) -> dict[int, str | None]:
        """Course titles by id (a few thousand rows at most, so a dict is fine)."""
        rows = self._conn.execute("SELECT id, title FROM courses WHERE id IS NOT NULL")
        return {int(cid): (str(title) if title is not None else None) for cid, title in rows}

    def segments(self, *, ordered: bool = True) -> Iterator[SnapshotRow]:
        """Every segment, ordered by course then id (orphans, without a channel, first)
        unless `ordered` is False; ids as integers or None, videos as text or None.

        A million rows pass through here: when every value has its expected type, the
        cursor itself is returned and no Python code runs per row.
        """
        sql = self._sql()
        order = "ORDER BY ch.courseid, s.id" if ordered else ""
        cursor = self._conn.execute(f"SELECT {sql.columns} {sql.source('main')} {order}")
        return cursor if self._is_plain() else map(_typed, cursor)

    def sql(self) -> SnapshotSql | None:
        """The segments as SQL for a database that attaches this file, or None if some value
        has another type than a SnapshotRow's (only `segments` converts those right)."""
        sql = self._sql()
        return sql if self._is_plain() else None

    def rows_of(self, select: str) -> list[tuple[Any, ...]]:
        """The rows of a query over this file (its tables in schema `main`)."""
        return self._conn.execute(select).fetchall()

    def _sql(self) -> SnapshotSql:
        title = f's."{self._title_column}"' if self._title_column else "NULL"
        columns = f"s.id, s.channel_id, ch.courseid, s.video, {title}"
        return SnapshotSql(_read_only(self.path), columns, title)

    def _is_plain(self) -> bool:
        """No value of another type than a SnapshotRow's (nor a NUL in a video), asked once
        (the file is read-only) of the tables rather than of their join: stricter, and half
        the cost of the join."""
        if self._plain is None:
            texts = ["video", *([self._title_column] if self._title_column else [])]
            # A NUL inside a video is plain to Python, but SQLite's string tests stop at it.
            nul = 'instr("video", char(0)) > 0'
            odd = [*_odd(["id", "channel_id"], "integer"), *_odd(texts, "text"), nul]
            odd_segment = " OR ".join(odd)
            odd_channel = " OR ".join(_odd(["courseid"], "integer"))
            found = self._conn.execute(
                f"SELECT EXISTS (SELECT 1 FROM segments WHERE {odd_segment}) "  # noqa: S608
                f"OR EXISTS (SELECT 1 FROM channels WHERE {odd_channel})"
            )
            self._plain = not found.fetchone()[0]
        return self._plain


def _odd(columns: list[str], kind: str) -> list[str]:
    """Conditions true where a column holds a value neither NULL nor of SQLite type `kind`."""
    return [f'(typeof("{c}") <> \'{kind}\' AND "{c}" IS NOT NULL)' for c in columns]


def _read_only(path: Path) -> str:
    """The snapshot's URI, opened read-only (by us, and by a store that attaches it)."""
    return f"file:{quote(str(path.resolve()))}?mode=ro"


@dataclass(frozen=True, slots=True)
class SnapshotSql:
    """The segments as SQL: the file to attach (read-only), the columns of a SnapshotRow
    (`s.id, s.channel_id, ch.courseid, s.video, <title>`), and the joined tables."""

    uri: str
    columns: str
    title: str

    def source(self, schema: str) -> str:
        """FROM the segments joined to their channels, in the snapshot's `schema`."""
        return f"FROM {schema}.segments s LEFT JOIN {schema}.channels ch ON ch.id = s.channel_id"


def _typed(row: tuple[object, ...]) -> SnapshotRow:
    """A row with a value of another type: ids that are not integers are no ids, a video
    that is not text is no video, a title is made text."""
    segment_id, channel_id, course_id, video, title = row
    return (
        _as_optional_int(segment_id),
        _as_optional_int(channel_id),
        _as_optional_int(course_id),
        video if isinstance(video, str) else None,
        str(title) if title is not None else None,
    )


def _check_file(path: Path) -> None:
    if not path.exists():
        raise BadInput(f"snapshot {path} does not exist; pass --snapshot PATH to a SQLite file")
    if path.is_dir():
        raise BadInput(f"snapshot {path} is a directory; pass the SQLite file inside it")
    try:
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except PermissionError:
        raise BadInput(f"snapshot {path} is not readable by this user") from None
    if head != SQLITE_MAGIC:
        what = "is empty" if not head else "is not a SQLite database"
        raise BadInput(f"snapshot {path} {what}; pass the catalogue's SQLite snapshot")


def _columns(conn: sqlite3.Connection) -> dict[str, set[str]]:
    """The columns of each required table the snapshot has, read by sqlite-utils'
    introspection (the design card's SQLite library; the state store speaks plain SQL).
    Imported here: `status` and the other state-only commands never load it."""
    import sqlite_utils

    db = sqlite_utils.Database(conn)
    tables = set(db.table_names())
    return {
        table: set(db.table(table).columns_dict) for table in REQUIRED_COLUMNS if table in tables
    }


def _check_schema(path: Path, columns: dict[str, set[str]]) -> None:
    missing_tables = [t for t in REQUIRED_COLUMNS if t not in columns]
    if missing_tables:
        raise BadInput(
            f"snapshot {path} has no table {', '.join(missing_tables)}; "
            "it needs courses, channels and segments (see the snapshot schema in the docs)"
        )
    missing = [
        f"{table}.{column}"
        for table, needed in REQUIRED_COLUMNS.items()
        for column in needed
        if column not in columns[table]
    ]
    if missing:
        raise BadInput(f"snapshot {path} lacks column {', '.join(missing)}")


INT64 = range(-(2**63), 2**63)


def _as_optional_int(value: object) -> int | None:
    """An id as SQLite can key it: an integer (or its decimal text) that fits in 64 bits;
    anything else (a REAL, a blob, 1e152, "+-5") is no id at all."""
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        try:
            value = int(value)
        except ValueError:
            return None
    if isinstance(value, int) and not isinstance(value, bool) and value in INT64:
        return value
    return None
