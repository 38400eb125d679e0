"""The state store: the durable queue of segments and what happened to each.

The engine only talks to the `Store` protocol below; SQLite is the embedded default and a
shared PostgreSQL store can stand in for it without the engine noticing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tfbulk.errors import BadInput
from tfbulk.pipeline.plan import PlanQuery, PlanRow
from tfbulk.settings import Sharing
from tfbulk.state.url import is_postgres_url

if TYPE_CHECKING:
    from tfbulk.state.postgres import PostgresStore


class Status(StrEnum):
    """A segment's state (docs/design.md draws the machine); the values are the contract's."""

    PENDING = "pending"
    PROCESSING = "processing"
    SUCCESS = "success"
    SKIPPED = "skipped"
    FAILED = "failed"

    @property
    def done(self) -> bool:
        return self in (Status.SUCCESS, Status.SKIPPED)


STATUSES = tuple(Status)


@dataclass(slots=True)
class Job:
    """A claimed segment: what the engine needs to fetch it (and resume a `.part`)."""

    segment_id: int
    course_id: int
    channel_id: int | None
    video: str
    title: str | None
    path: str | None
    error: str | None
    etag: str | None
    last_modified: str | None
    expected_size: int | None
    known_size: int | None
    run_attempts: int
    last_kind: str | None
    replace: bool
    attempts: int = 0  # every attempt so far, all runs: what `failed` and the views report


# What the engine records; the store applies them in order, in batches.
@dataclass(frozen=True, slots=True)
class Validated:
    """Response validators of the body now being written to `.part` (for a later Range)."""

    segment_id: int
    etag: str | None
    last_modified: str | None
    expected_size: int | None


@dataclass(frozen=True, slots=True)
class Attempted:
    """An attempt failed and is retried at once (it still counts as an attempt)."""

    segment_id: int
    kind: str
    error: str


@dataclass(frozen=True, slots=True)
class Retry:
    """Back to `pending`, not to be claimed before `next_at`."""

    segment_id: int
    kind: str
    error: str
    next_at: float
    restart: bool


@dataclass(frozen=True, slots=True)
class Done:
    """`success` (downloaded, attempt counted) or `skipped` (a valid file was there)."""

    segment_id: int
    status: str
    size: int
    md5: str | None
    etag: str | None
    finished_at: float


@dataclass(frozen=True, slots=True)
class Failed:
    segment_id: int
    kind: str | None
    error: str
    attempted: bool
    finished_at: float


@dataclass(frozen=True, slots=True)
class Parked:
    """Stopped mid-flight by us (signal, --max-time, full disk): back to `pending`."""

    segment_id: int


Outcome = Validated | Attempted | Retry | Done | Failed | Parked


@dataclass(frozen=True, slots=True)
class CourseCounts:
    course_id: int
    title: str | None
    total: int = 0
    success: int = 0
    skipped: int = 0
    failed: int = 0
    pending: int = 0
    processing: int = 0
    bytes: int = 0

    @property
    def done(self) -> int:
        return self.success + self.skipped


@dataclass(frozen=True)
class Summary:
    """Counts by status, overall and per course, as the contract's JSON spells them."""

    courses: tuple[CourseCounts, ...] = field(default=())

    def total_of(self, name: str) -> int:
        return sum(getattr(course, name) for course in self.courses)

    @property
    def total(self) -> int:
        return self.total_of("total")

    def as_json(self) -> dict[str, object]:
        keys = _COUNTED
        data: dict[str, object] = {key: self.total_of(key) for key in keys}
        data["courses"] = [
            {"id": c.course_id, "title": c.title} | {k: getattr(c, k) for k in keys}
            for c in self.courses
        ]
        return data


def summary_from(rows: Iterable[tuple[int, str | None, str, int, int]]) -> Summary:
    """Both stores' summary query returns (course, title, status, count, bytes) rows.

    Ten thousand courses make twenty thousand rows here on every `status`: plain dicts."""
    titles: dict[int, str | None] = {}
    counts: dict[int, dict[str, int]] = {}
    for course_id, title, status, count, size in rows:
        course = counts.get(course_id)
        if course is None:
            titles[course_id] = title
            course = counts[course_id] = dict.fromkeys(_COUNTED, 0)
        course[status] = course.get(status, 0) + count
        course["total"] += count
        if status in _DONE:
            course["bytes"] += size
    return Summary(
        tuple(
            CourseCounts(cid, titles[cid], *(c[key] for key in _COUNTED))
            for cid, c in counts.items()
        )
    )


_COUNTED = ("total", *STATUSES[2:], "pending", "processing", "bytes")  # CourseCounts' order
_DONE = frozenset(status.value for status in STATUSES if status.done)


@dataclass(frozen=True, slots=True)
class SegmentRecord:
    """One row as `status --course` and `failed` show it."""

    segment_id: int
    course_id: int
    title: str | None
    path: str | None
    status: str
    attempts: int
    size: int | None
    error: str | None
    md5: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One worker on a shared queue, as `tfbulk status` lists it (times are Unix seconds)."""

    id: str
    host: str
    pid: int
    started: float
    last_heartbeat: float
    heartbeat_age: float  # seconds, by the database's clock (hosts' clocks may differ)
    claimed: int
    files: int
    bytes: int
    rate: float
    live: bool
    limits: dict[str, object] = field(default_factory=dict)  # the worker's `run` limits


@dataclass(frozen=True, slots=True)
class Health:
    """What `doctor` asks a store: integrity (None where the server keeps it), schema
    version, and the PID of the run holding a SQLite store."""

    integrity: str | None
    schema_version: int
    holder: int | None = None


@dataclass(frozen=True, slots=True)
class PlanChanges:
    """What planning changed in the store."""

    new: int
    changed: int


class Store(Protocol):
    """The queue the engine pulls from. Implementations: `state.sqlite`, `state.postgres`."""

    def plan(
        self,
        rows: Iterable[PlanRow] | PlanQuery,
        titles: Mapping[int, str | None],
        *,
        distinct_paths: bool = False,
    ) -> PlanChanges: ...

    def scope_planned(self, rows: Iterable[PlanRow] | PlanQuery) -> None: ...

    def start_run(self) -> None: ...

    def claim(self, limit: int, now: float) -> list[Job]: ...

    def next_due(self) -> float | None: ...

    def record(self, outcome: Outcome) -> None: ...

    def flush(self) -> None: ...

    def summary(self, *, scoped: bool = True, course: int | None = None) -> Summary: ...

    def records(
        self,
        *,
        course: int | None = None,
        status: str | None = None,
        scoped: bool = False,
        limit: int = -1,
    ) -> list[SegmentRecord]: ...

    def finished(self, *, course: int | None = None) -> Iterator[SegmentRecord]: ...

    def requeue_failed(self, courses: Iterable[int], segments: Iterable[int]) -> int: ...

    def requeue(self, reasons: Mapping[int, str]) -> int: ...

    def workers(self) -> list[WorkerStatus]: ...

    @property
    def worker_id(self) -> str | None: ...

    def health(self) -> Health: ...

    def close(self) -> None: ...


def open_store(
    spec: str,
    *,
    create: bool,
    lock: bool,
    dest: Path | None = None,
    sharing: Sharing | None = None,
    readonly: bool = False,
) -> Store:
    """The store a `--state` value names: a SQLite file path or a PostgreSQL URL.

    `lock` asks to run the queue: SQLite then takes its one-run lock (exit 3 if taken);
    on PostgreSQL the process joins the other workers, with `sharing`'s lease and global
    cap and its `.part` locks under `dest`. `readonly` (doctor) leaves even an old schema
    as it is.
    """
    if is_postgres_url(spec):
        return _postgres().open(
            spec,
            create=create,
            worker=lock,
            dest=dest,
            sharing=sharing or Sharing(),
            readonly=readonly,
        )
    from tfbulk.state.sqlite import SQLiteStore

    return SQLiteStore.open(Path(spec), create=create, lock=lock, readonly=readonly)


def store_exists(spec: str) -> bool:
    """Whether there is state to read (a dry run must not create any)."""
    if is_postgres_url(spec):
        return _postgres().exists(spec)
    return Path(spec).exists()


def _postgres() -> type[PostgresStore]:
    """The PostgreSQL store, whose driver is an optional extra."""
    try:
        from tfbulk.state.postgres import PostgresStore
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "psycopg":
            raise BadInput(
                "--state: the PostgreSQL store needs the psycopg driver; "
                "pip install 'tfbulk[postgres]'"
            ) from None
        raise
    return PostgresStore
