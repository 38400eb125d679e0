"""The SQL store, written once: transitions, the outcome buffer, row mapping, every read.

`state.sqlite` and `state.postgres` are dialects of this core. They supply how a statement
runs (placeholders, transactions, what a lost connection means), how this process's scope
is spelled, how segments are claimed (one writer's lock, or `SKIP LOCKED` and leases) and
how a plan is loaded. The SQL here uses `:name` parameters; a dialect rewrites them once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from tfbulk.errors import BadInput
from tfbulk.state import (
    Attempted,
    Done,
    Failed,
    Job,
    Outcome,
    Parked,
    Retry,
    SegmentRecord,
    Status,
    Summary,
    Validated,
    summary_from,
)

Row = tuple[Any, ...]
Params = Mapping[str, object]

JOB_COLUMNS = (
    "id, course_id, channel_id, video, title, path, error, etag, last_modified, "
    "expected_size, size, run_attempts, last_kind, replace, attempts"
)
RECORD_COLUMNS = "s.id, s.course_id, s.title, s.path, s.status, s.attempts, s.size, s.error, s.md5"
RELEASE = "worker = NULL, lease_until = NULL"

# The segment state machine (docs/design.md). `{owned}` is the dialect's guard that keeps
# an outcome off a row this process no longer holds.
TRANSITIONS: Mapping[type, str] = {
    Validated: """UPDATE segments SET etag = :etag, last_modified = :modified,
        expected_size = :expected WHERE id = :id{owned}""",
    Attempted: """UPDATE segments SET attempts = attempts + 1, run_attempts = run_attempts + 1,
        last_kind = :kind, error = :error, updated_at = :now WHERE id = :id{owned}""",
    Retry: f"""UPDATE segments SET status = 'pending', {RELEASE}, attempts = attempts + 1,
        run_attempts = run_attempts + 1, last_kind = :kind, error = :error,
        next_at = :next_at, updated_at = :now,
        etag = CASE WHEN :restart THEN NULL ELSE etag END,
        expected_size = CASE WHEN :restart THEN NULL ELSE expected_size END
        WHERE id = :id{{owned}}""",
    Done: f"""UPDATE segments SET status = :status, {RELEASE}, size = :size, md5 = :md5,
        etag = coalesce(:etag, etag), attempts = attempts + :counted,
        run_attempts = run_attempts + :counted, error = NULL, replace = FALSE,
        finished_at = :finished, updated_at = :now WHERE id = :id{{owned}}""",
    Failed: f"""UPDATE segments SET status = 'failed', {RELEASE},
        last_kind = coalesce(:kind, last_kind), error = :error,
        attempts = attempts + :counted, run_attempts = run_attempts + :counted,
        finished_at = :finished, updated_at = :now WHERE id = :id{{owned}}""",
    Parked: f"UPDATE segments SET status = 'pending', {RELEASE}, updated_at = :now "
    "WHERE id = :id{owned}",
}

# Planning: the planned rows sit in a table of the dialect's (`{incoming}`); only those
# that differ from the stored row touch `segments`. A changed video or path starts the
# segment over (and a changed video replaces the file); a changed title is only noted.
_DIFFERS = """s.id IS NULL OR s.video {ne} i.video OR s.path {ne} i.path
  OR s.title {ne} i.title OR s.course_id {ne} i.course_id OR s.channel_id {ne} i.channel_id"""
_RESTART = "s.video {ne} excluded.video OR s.path {ne} excluded.path"
RESET_ON_CHANGE: Mapping[str, str] = {
    "status": "excluded.status",
    "error": "excluded.error",
    "attempts": "0",
    "size": "NULL",
    "md5": "NULL",
    "etag": "NULL",
    "last_modified": "NULL",
    "expected_size": "NULL",
    "worker": "NULL",
    "lease_until": "NULL",
}


def upsert_sql(incoming: str, ne: str) -> str:
    """The plan's upsert from `incoming` (unique ids), in a dialect's null-safe "differs"."""
    restart = _RESTART.format(ne=ne)
    resets = ",\n    ".join(
        f"{column} = CASE WHEN {restart} THEN {value} ELSE s.{column} END"
        for column, value in RESET_ON_CHANGE.items()
    )
    return f"""
INSERT INTO segments AS s (id, course_id, channel_id, video, title, path, status, error,
                           planned_at, updated_at)
SELECT i.id, i.course_id, i.channel_id, i.video, i.title, i.path,
       CASE WHEN i.error IS NULL THEN 'pending' ELSE 'failed' END, i.error, :now, :now
FROM {incoming} i LEFT JOIN segments s ON s.id = i.id
WHERE {_DIFFERS.format(ne=ne)}
ORDER BY i.id
ON CONFLICT (id) DO UPDATE SET
    course_id = excluded.course_id,
    channel_id = excluded.channel_id,
    title = excluded.title,
    replace = CASE WHEN s.video {ne} excluded.video THEN TRUE ELSE s.replace END,
    {resets},
    video = excluded.video,
    path = excluded.path,
    updated_at = excluded.updated_at"""


COURSES_UPSERT = """
INSERT INTO courses AS c (id, title) VALUES (:id, :title)
ON CONFLICT (id) DO UPDATE SET title = excluded.title WHERE c.title {ne} excluded.title"""

_SCANNED_SUMMARY = """
SELECT s.course_id, c.title, s.status, count(*), CAST(coalesce(sum(s.size), 0) AS BIGINT)
FROM segments s LEFT JOIN courses c ON c.id = s.course_id {where}
GROUP BY s.course_id, c.title, s.status ORDER BY s.course_id"""
_COUNTED_SUMMARY = """
SELECT k.course_id, c.title, k.status, CAST(sum(k.n) AS BIGINT), CAST(sum(k.bytes) AS BIGINT)
FROM {counts} k LEFT JOIN courses c ON c.id = k.course_id {where}
GROUP BY k.course_id, c.title, k.status HAVING sum(k.n) > 0 ORDER BY k.course_id"""
_REQUEUE = f"""
UPDATE segments SET status = 'pending', replace = TRUE, error = :reason, size = NULL,
  md5 = NULL, run_attempts = 0, last_kind = NULL, next_at = 0, {RELEASE} WHERE id = :id"""
_REQUEUE_FAILED = """
UPDATE segments SET status = 'pending', run_attempts = 0, last_kind = NULL, next_at = 0,
  error = NULL WHERE status = 'failed' AND path IS NOT NULL"""
_SHARED_PATH = """
SELECT s.path, count(*), min(s.id), max(s.id) FROM segments s
WHERE s.path IS NOT NULL AND {scope} GROUP BY s.path HAVING count(*) > 1 LIMIT 1"""


def job_from(row: Row) -> Job:
    """A claimed row (selected as JOB_COLUMNS) as the engine's Job."""
    return Job(
        segment_id=row[0],
        course_id=row[1],
        channel_id=row[2],
        video=row[3],
        title=row[4],
        path=row[5],
        error=row[6],
        etag=row[7],
        last_modified=row[8],
        expected_size=row[9],
        known_size=row[10],
        run_attempts=row[11],
        last_kind=row[12],
        replace=bool(row[13]),
        attempts=row[14],
    )


def jobs_from(rows: Iterable[Row]) -> list[Job]:
    """Claimed rows as jobs in (course, segment) order, whatever order RETURNING gave."""
    jobs = [job_from(row) for row in rows]
    jobs.sort(key=lambda job: (job.course_id, job.segment_id))
    return jobs


def transition_params(outcome: Outcome, now: float, me: str | None) -> dict[str, object]:
    """The parameters of `TRANSITIONS[type(outcome)]`."""
    params: dict[str, object] = {"id": outcome.segment_id, "now": now, "me": me}
    match outcome:
        case Validated(_, etag, modified, expected):
            params |= {"etag": etag, "modified": modified, "expected": expected}
        case Attempted(_, kind, error):
            params |= {"kind": str(kind), "error": error}
        case Retry(_, kind, error, next_at, restart):
            params |= {"kind": str(kind), "error": error, "next_at": next_at, "restart": restart}
        case Done(_, status, size, md5, etag, finished):
            params |= {
                "status": str(status),
                "size": size,
                "md5": md5,
                "etag": etag,
                "counted": int(status == Status.SUCCESS),
                "finished": finished,
            }
        case Failed(_, kind, error, attempted, finished):
            params |= {
                "kind": None if kind is None else str(kind),
                "error": error,
                "counted": int(attempted),
                "finished": finished,
            }
        case Parked():
            pass
        case _:
            raise TypeError(f"unknown outcome {outcome!r}")
    return params


class SQLStore(ABC):
    """What both stores share; a dialect subclasses it and fills in the hooks below."""

    OWNED: ClassVar[str] = ""  # appended to each transition's WHERE
    NE: ClassVar[str] = "IS NOT"  # null-safe "differs"
    COUNTS: ClassVar[str] = "counts"  # the relation of (course_id, status, n, bytes) rows
    _transitions: ClassVar[dict[type, str]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._transitions = {
            kind: cls.sql(text.format(owned=cls.OWNED)) for kind, text in TRANSITIONS.items()
        }

    def __init__(self) -> None:
        self._buffer: deque[Outcome] = deque()
        # Rows in scope, when all of them are known to be stored (after a plan): a scope
        # as large as the store is the whole store, and its counts need no scan.
        self._scope_rows: int | None = None

    # -- dialect hooks ------------------------------------------------------------------

    @classmethod
    def sql(cls, text: str) -> str:
        """`text` with the dialect's placeholders."""
        return text

    @abstractmethod
    def _query(self, sql: str, params: Params) -> list[Row]:
        """Run one statement on the open connection (inside whatever transaction is open)."""

    @abstractmethod
    def _execute(self, sql: str, params: Params) -> int:
        """Run one write on the open connection; the number of rows it changed."""

    @abstractmethod
    def _reading(self) -> AbstractContextManager[None]:
        """Around a read: every recorded outcome visible, connection trouble reported."""

    @abstractmethod
    def _writing(self) -> AbstractContextManager[None]:
        """One write transaction that must succeed now."""

    @abstractmethod
    def _stream(self, sql: str, params: Params) -> Iterator[Row]:
        """Rows of a long read, a batch at a time."""

    @abstractmethod
    def _scope_sql(self) -> str | None:
        """The condition on `s` that selects this process's scope; None: every row (no
        scope yet, or one known to be the whole store)."""

    def _scope_params(self) -> dict[str, object]:
        return {}

    @abstractmethod
    def _any(self, column: str, name: str) -> str:
        """`column` is one of the ids in parameter `name` (given by `_ids`)."""

    @abstractmethod
    def _ids(self, ids: list[int]) -> object:
        """A list of ids as the parameter `_any` reads."""

    # -- outcomes -----------------------------------------------------------------------

    def record(self, outcome: Outcome) -> None:
        """Buffer an outcome; safe to call from the event loop while a flush runs."""
        self._buffer.append(outcome)

    def _apply(self, batch: list[Outcome], now: float, me: str | None) -> dict[int, bool]:
        """Apply a batch inside the caller's transaction: by segment, each in the order
        recorded (a fixed lock order for concurrent writers). Keyed by `id(outcome)`:
        whether it changed its row."""
        applied = {}
        for outcome in sorted(batch, key=lambda o: o.segment_id):
            params = transition_params(outcome, now, me)
            applied[id(outcome)] = self._execute(self._transitions[type(outcome)], params) > 0
        return applied

    # -- planning -----------------------------------------------------------------------

    def _upsert(self, incoming: str, now: float) -> int:
        """Write what differs from `incoming` into `segments`; rows inserted or changed."""
        return self._execute(self.sql(upsert_sql(incoming, self.NE)), {"now": now})

    def _upsert_courses(self, courses: Iterable[int], titles: Mapping[int, str | None]) -> None:
        sql = self.sql(COURSES_UPSERT.format(ne=self.NE))
        for course_id in sorted(courses):
            self._execute(sql, {"id": course_id, "title": titles.get(course_id)})

    def _refuse_shared_paths(self) -> None:
        """Two segments of the scope would write one file: refuse the plan (it rolls back)."""
        scope = self._scope_sql() or "TRUE"
        clash = self._query(self.sql(_SHARED_PATH.format(scope=scope)), self._scope_params())
        if clash:
            path, count, first, last = clash[0]
            raise BadInput(
                f"--path-template maps {count} segments (e.g. {first} and {last}) to the same "
                f"file {path}; include {{segment_id}} in it"
            )

    def _stored_rows(self) -> int:
        """How many segments the store holds, from the counts (no scan)."""
        rows = self._query(
            self.sql(f"SELECT CAST(coalesce(sum(n), 0) AS BIGINT) FROM {self.COUNTS} k"), {}
        )
        return int(rows[0][0])

    # -- reading ------------------------------------------------------------------------

    def summary(self, *, scoped: bool = True, course: int | None = None) -> Summary:
        """Counts per course and status: of this run's scope, or of the whole store.

        Read from the counts the triggers keep, unless the scope is a part of the store.
        """
        with self._reading():
            if scoped and self._scope_sql() is not None and not self._scope_is_whole():
                where, params = self._filter(scoped=True, course=course)
                return summary_from(
                    self._query(self.sql(_SCANNED_SUMMARY.format(where=where)), params)
                )
            where = "WHERE k.course_id = :course" if course is not None else ""
            sql = _COUNTED_SUMMARY.format(counts=self.COUNTS, where=where)
            return summary_from(self._query(self.sql(sql), {"course": course}))

    def _scope_is_whole(self) -> bool:
        return self._scope_rows is not None and self._scope_rows == self._stored_rows()

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
            where = f"{where} {'AND' if where else 'WHERE'} s.status = :status"
            params["status"] = str(status)
        sql = f"SELECT {RECORD_COLUMNS} FROM segments s {where} ORDER BY s.course_id, s.id"
        if limit >= 0:
            sql, params["limit"] = f"{sql} LIMIT :limit", limit
        with self._reading():
            rows = self._query(self.sql(sql), params)
        return [SegmentRecord(*row) for row in rows]

    def finished(self, *, course: int | None = None) -> Iterator[SegmentRecord]:
        """Every `success`/`skipped` segment, streamed (a million rows never sit in memory)."""
        where, params = self._filter(scoped=False, course=course)
        where = f"{where} {'AND' if where else 'WHERE'} s.status IN ('success', 'skipped')"
        sql = f"SELECT {RECORD_COLUMNS} FROM segments s {where} ORDER BY s.course_id, s.id"
        for row in self._stream(self.sql(sql), params):
            yield SegmentRecord(*row)

    def requeue(self, reasons: Mapping[int, str]) -> int:
        """Back to pending with the reason, replacing whatever is at the final path."""
        sql = self.sql(_REQUEUE)
        with self._writing():
            for segment_id, reason in reasons.items():
                self._execute(sql, {"id": segment_id, "reason": reason})
        return len(reasons)

    def requeue_failed(self, courses: Iterable[int], segments: Iterable[int]) -> int:
        """`tfbulk retry`: failed → pending (all, or only those courses/segments)."""
        courses, segments = list(courses), list(segments)
        sql = _REQUEUE_FAILED
        if courses or segments:
            sql += f" AND ({self._any('course_id', 'courses')} OR {self._any('id', 'segments')})"
        params = {"courses": self._ids(courses), "segments": self._ids(segments)}
        with self._writing():
            return self._execute(self.sql(sql), params)

    def _filter(self, *, scoped: bool, course: int | None) -> tuple[str, dict[str, object]]:
        clauses: list[str] = []
        params: dict[str, object] = {}
        scope = self._scope_sql() if scoped else None
        if scope is not None:
            clauses.append(scope)
            params |= self._scope_params()
        if course is not None:
            clauses.append("s.course_id = :course")
            params["course"] = course
        return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params
