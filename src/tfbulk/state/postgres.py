"""The shared state store: one PostgreSQL queue that workers on any number of hosts pull from.

Same protocol as `state.sqlite`, different guarantees. Workers claim batches with
`FOR UPDATE SKIP LOCKED` and hold each claimed segment under their worker id and a lease
that a heartbeat thread renews; a dead worker's leases run out and the claim query takes
its segments over. Outcomes apply only `WHERE worker = me`, so a worker that lost a lease
cannot overwrite the new owner; a file lock per segment (`partlock`) keeps two live
workers off the same `.part`. Losing PostgreSQL mid-run costs nothing: outcomes stay
buffered, downloads in flight go on, and each buffered batch is committed exactly once
after the reconnect (its sequence number is written in the same transaction).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tfbulk.errors import BadInput, StateUnavailable
from tfbulk.pipeline.plan import PlanQuery, PlanRow
from tfbulk.settings import STATE_DIR, Sharing
from tfbulk.state import (
    Done,
    Failed,
    Health,
    Job,
    Outcome,
    Parked,
    PlanChanges,
    Retry,
    Status,
    WorkerStatus,
)
from tfbulk.state.heartbeat import FOLD_COUNTS, Heartbeat
from tfbulk.state.partlock import PartLocks
from tfbulk.state.schema import MIGRATE_LOCK, PG_SCHEMA, POSTGRES_STEPS, migrate, refuse_newer
from tfbulk.state.sql import JOB_COLUMNS, RELEASE, Params, Row, SQLStore, jobs_from
from tfbulk.state.url import redact_url, scrub

PLAN_LOCK = 0x7466_0002
CLAIM_LOCK = 0x7466_0003
PLAN_KEEP = "1 hour"  # an unused plan's scope is kept this long, then dropped
POLL = 0.25  # work is due but could not be claimed (global cap, locks): ask again this soon
CAPPED_RECENT = 4 * POLL  # a worker held back by --max-global this recently is waiting
STREAM_BATCH = 1000
HELD_POLL = 1.0  # others hold the last segments: look again this often (they may finish or die)
BUSY_RETRY = 2.0  # a segment whose `.part` another live process holds is skipped this long
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0
CONNECT_DEFAULTS = {
    "connect_timeout": "10",
    "application_name": "tfbulk",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
}

_CANDIDATES = """
SELECT s.id FROM segments s
WHERE {scope} AND {which} AND NOT (s.id = ANY(%(skip)s))
ORDER BY s.course_id, s.id LIMIT %(limit)s
FOR UPDATE OF s SKIP LOCKED
"""
_TAKEOVER = "s.status = 'processing' AND s.lease_until < now()"
_PENDING = "s.status = 'pending' AND s.next_at <= %(now)s"
_TAKE = f"""
UPDATE segments SET status = 'processing', worker = %(me)s,
  lease_until = now() + make_interval(secs => %(lease)s), started_at = %(now)s, updated_at = %(now)s
WHERE id = ANY(%(ids)s)
RETURNING {JOB_COLUMNS}
"""
# --max-global: what is in flight, how many share it, who is waiting below a fair share.
_CAP_USE = """
SELECT (SELECT count(*) FROM segments WHERE status = 'processing'),
       (SELECT count(*) FROM workers w
        WHERE w.last_heartbeat + make_interval(secs => w.lease_s) >= now())
"""
_WAITING = """
SELECT count(*) FILTER (WHERE held < %(floor)s), count(*) FILTER (WHERE held < %(ceil)s)
FROM (SELECT (SELECT count(*) FROM segments s
              WHERE s.worker = w.id AND s.status = 'processing') AS held
      FROM workers w
      WHERE w.id <> %(me)s AND w.capped_at > now() - make_interval(secs => %(recent)s)) AS t
"""
# Each walks an index in order and stops at the first row of the scope.
_NEXT_RETRY = """
SELECT s.next_at FROM segments s
WHERE s.status = 'pending' AND {scope} AND NOT (s.id = ANY(%(held)s))
ORDER BY s.next_at LIMIT 1
"""
_WORKERS = """
SELECT w.id, w.host, w.pid, extract(epoch FROM w.started_at),
  extract(epoch FROM w.last_heartbeat), extract(epoch FROM now() - w.last_heartbeat),
  (SELECT count(*) FROM segments s WHERE s.worker = w.id AND s.status = 'processing'),
  w.files, w.bytes, w.rate, w.last_heartbeat + make_interval(secs => w.lease_s) >= now(),
  w.limits
FROM workers w ORDER BY w.started_at, w.id
"""
_NEXT_LEASE = """
SELECT extract(epoch FROM min(s.lease_until) - now()) FROM segments s
WHERE s.status = 'processing' AND {scope} AND NOT (s.id = ANY(%(held)s))
"""
_RELEASED = f"status = 'pending', {RELEASE}"
_TERMINAL = (Retry, Done, Failed, Parked)

# Planning: rows arrive in a temporary table, only what differs touches `segments`.
_INCOMING = """
CREATE TEMP TABLE incoming (
  n bigint GENERATED ALWAYS AS IDENTITY, id bigint, course_id bigint, channel_id bigint,
  video text, title text, path text, error text) ON COMMIT DROP
"""
_LATEST = "(SELECT DISTINCT ON (id) * FROM incoming ORDER BY id, n DESC)"  # the last one wins
_PLACEHOLDER = re.compile(r"'[^']*'|(?<![:\w]):([a-z_][a-z0-9_]*)")  # literals kept as they are


@functools.cache
def _placeholders(text: str) -> str:
    """`:name` parameters as psycopg's `%(name)s` (`::type` casts and literals left alone)."""
    return _PLACEHOLDER.sub(lambda m: f"%({m[1]})s" if m[1] else m[0], text)


class PostgresStore(SQLStore):
    """A connection to the shared queue; with `worker=True`, also one of its workers."""

    OWNED = " AND worker = :me AND status = 'processing'"
    NE = "IS DISTINCT FROM"
    COUNTS = "(SELECT * FROM counts UNION ALL SELECT * FROM count_changes)"

    def __init__(self, spec: str, conn: psycopg.Connection[Row]) -> None:
        super().__init__()
        self._spec = spec
        self.where = redact_url(spec)
        self._conn = conn
        self._scope: tuple[str, int | None] | None = None
        self._me: str | None = None
        self._lease = Sharing().lease
        self._max_global: int | None = None
        self._locks: PartLocks | None = None
        self._heartbeat: Heartbeat | None = None
        self._held: set[int] = set()
        self._held_lock = threading.Lock()
        self._busy: dict[int, float] = {}
        self._capped = False  # --max-global left the last claim no slot at all
        self._seq = 0  # the last flush batch known to be committed
        self._uncertain: tuple[int, int] | None = None  # (seq, size) of a batch lost mid-commit
        self._files = 0
        self._bytes = 0
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._delay = BACKOFF_FIRST

    @classmethod
    def open(
        cls,
        spec: str,
        *,
        create: bool,
        worker: bool,
        dest: Path | None,
        sharing: Sharing,
        readonly: bool = False,
    ) -> PostgresStore:
        """Connect (and on first use create, or upgrade, the schema); a worker also
        registers itself. `readonly` (doctor) leaves an old schema as it is."""
        where = redact_url(spec)
        try:
            conn = _connect(spec)
        except psycopg.Error as exc:
            raise BadInput(f"cannot connect to the state DB {where}: {_why(exc, spec)}") from None
        store = cls(spec, conn)
        try:
            if not create and store.schema_version() == 0:
                raise BadInput(f"no tfbulk state in {where}; run `tfbulk run --state ...` first")
            if readonly:
                refuse_newer(store.schema_version(), where)
            else:
                migrate(store, POSTGRES_STEPS)  # readers too: an old schema has no counts
        except BaseException as exc:
            conn.close()
            if isinstance(exc, psycopg.Error):
                raise BadInput(f"cannot use the state DB {where}: {_why(exc, spec)}") from None
            raise
        if worker:
            if dest is None:
                raise ValueError("a worker needs the destination folder for its .part locks")
            try:
                store._register(dest, sharing)
            except BaseException:
                store.close()
                raise
        return store

    @classmethod
    def exists(cls, spec: str) -> bool:
        """Whether tfbulk has ever used this database (dry runs must not create anything)."""
        try:
            conn = _connect(spec)
        except psycopg.Error as exc:
            raise BadInput(
                f"cannot connect to the state DB {redact_url(spec)}: {_why(exc, spec)}"
            ) from None
        with conn:
            return cls(spec, conn).schema_version() > 0

    def _register(self, dest: Path, sharing: Sharing) -> None:
        self._me = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._lease = sharing.lease
        self._max_global = sharing.max_global
        self._locks = PartLocks(dest / STATE_DIR)
        self._heartbeat = Heartbeat(
            connect=lambda: _connect(self._spec),
            worker=self._me,
            lease=self._lease,
            held=self._held_ids,
            progress=lambda: (self._files, self._bytes),
            plan=lambda: self._scope[1] if self._scope else None,
        )
        try:
            self._heartbeat.beat()
            self._conn.execute(
                "UPDATE workers SET limits = %s WHERE id = %s", (sharing.limits, self._me)
            )
        except psycopg.Error as exc:
            why = _why(exc, self._spec)
            raise BadInput(f"cannot use the state DB {self.where}: {why}") from None
        self._heartbeat.start()  # from now on: planning a big snapshot may outlast a lease

    def close(self) -> None:
        """Record what is left, hand back anything still held, and leave the workers list."""
        if self._heartbeat:
            self._heartbeat.stop()
        with suppress(psycopg.Error):
            self.flush()
            if self._me and self._usable():
                with self._conn.transaction():
                    self._conn.execute(
                        f"UPDATE segments SET {_RELEASED} "
                        "WHERE worker = %(me)s AND status = 'processing'",
                        {"me": self._me},
                    )
                    self._conn.execute("DELETE FROM workers WHERE id = %s", (self._me,))
                    self._conn.execute(FOLD_COUNTS)
        if self._locks:
            self._locks.close()
        self._conn.close()

    # -- migration (state.schema) ---------------------------------------------------------

    def schema_version(self) -> int:
        """The database's version: 0 when tfbulk has never been there."""
        found = self._conn.execute("SELECT to_regclass(%s)", (f"{PG_SCHEMA}.meta",)).fetchone()
        if not found or found[0] is None:
            return 0
        row = self._conn.execute(
            f"SELECT value FROM {PG_SCHEMA}.meta WHERE key = 'schema_version'"
        ).fetchone()
        return int(row[0]) if row else 0

    @contextmanager
    def migration(self) -> Iterator[None]:
        """Workers starting together serialise on an advisory lock."""
        with self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
            self._conn.execute(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}")
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {PG_SCHEMA}.meta "
                "(key text PRIMARY KEY, value text NOT NULL)"
            )
            yield

    def run_script(self, script: str) -> None:
        self._conn.execute(script.encode())  # bytes: no placeholders to look for

    def set_schema_version(self, version: int) -> None:
        self._conn.execute(
            f"INSERT INTO {PG_SCHEMA}.meta (key, value) VALUES ('schema_version', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(version),),
        )

    def health(self) -> Health:
        """The server keeps its own integrity; the schema version is ours to report."""
        try:
            return Health(integrity=None, schema_version=self.schema_version())
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from None

    # -- planning -----------------------------------------------------------------

    def plan(
        self,
        rows: Iterable[PlanRow] | PlanQuery,
        titles: Mapping[int, str | None],
        *,
        distinct_paths: bool = False,
    ) -> PlanChanges:
        """Upsert the planned rows once per distinct plan; every worker scopes to its members.

        Each worker streams its rows into a temporary table and fingerprints them; under an
        advisory lock, the first worker with a new fingerprint writes the differences and
        the plan's members, and the next ones find the plan there and only adopt it.
        """
        rows = _streamed(rows)
        now = time.time()
        with self._must("plan"):
            self._conn.execute(_INCOMING)
            fingerprint, courses = self._load_incoming(rows, titles)
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (PLAN_LOCK,))
            latest = self._conn.execute(
                "SELECT id, fingerprint FROM plans ORDER BY id DESC LIMIT 1"
            ).fetchone()
            if latest and latest[1] == fingerprint:
                adopted = self._conn.execute(
                    "UPDATE plans SET used_at = now() WHERE id = %s RETURNING segments",
                    (latest[0],),
                ).fetchone()
                self._scope = ("plan", latest[0])
                self._scope_rows = adopted[0] if adopted else None
                return PlanChanges(new=0, changed=0)
            return self._write_plan(now, fingerprint, courses, titles, distinct_paths)

    def _load_incoming(
        self, rows: Iterable[PlanRow], titles: Mapping[int, str | None]
    ) -> tuple[str, set[int]]:
        """COPY the rows into `incoming`; the fingerprint covers rows and course titles."""
        digest = hashlib.sha256()
        courses: set[int] = set()
        with (
            self._conn.cursor() as cursor,
            cursor.copy(
                "COPY incoming (id, course_id, channel_id, video, title, path, error) FROM STDIN"
            ) as copy,
        ):
            for r in rows:
                values = (
                    r.segment_id, r.course_id, r.channel_id, r.video, r.title, r.path, r.error
                )  # fmt: skip
                digest.update(repr(values).encode())
                copy.write_row(values)
                courses.add(r.course_id)
        for course_id in sorted(courses):
            digest.update(repr((course_id, titles.get(course_id))).encode())
        return digest.hexdigest(), courses

    def _write_plan(
        self,
        now: float,
        fingerprint: str,
        courses: set[int],
        titles: Mapping[int, str | None],
        distinct_paths: bool,
    ) -> PlanChanges:
        self._conn.execute("ANALYZE incoming")
        before = self._stored_rows()  # under PLAN_LOCK: only this plan adds rows now
        written = self._upsert(_LATEST, now)
        new = self._stored_rows() - before
        self._upsert_courses(courses, titles)
        plan_row = self._conn.execute(
            "INSERT INTO plans (fingerprint, segments) "
            "VALUES (%s, (SELECT count(DISTINCT id) FROM incoming)) RETURNING id, segments",
            (fingerprint,),
        ).fetchone()
        assert plan_row is not None
        plan_id, self._scope_rows = plan_row
        self._conn.execute(
            "INSERT INTO plan_members (plan_id, segment_id) SELECT DISTINCT %s, id FROM incoming",
            (plan_id,),
        )
        self._scope = ("plan", plan_id)
        if not distinct_paths:
            self._refuse_shared_paths()
        # Fresh statistics, or the first claims of a big plan scan instead of walking the index.
        self._conn.execute("ANALYZE segments, plan_members")
        self._conn.execute(
            "DELETE FROM plans p WHERE p.id <> %s "
            f"AND p.used_at < now() - interval '{PLAN_KEEP}' "
            "AND NOT EXISTS (SELECT 1 FROM workers w WHERE w.plan_id = p.id)",
            (plan_id,),
        )
        self._conn.execute(FOLD_COUNTS)
        return PlanChanges(new=new, changed=written - new)

    def scope_planned(self, rows: Iterable[PlanRow] | PlanQuery) -> None:
        """Scope without writing (dry runs): the ids only go to a temporary table."""
        rows = _streamed(rows)
        self._scope_rows = None
        with self._must("dry run"):
            self._conn.execute("DROP TABLE IF EXISTS pg_temp.scope_ids")
            self._conn.execute("CREATE TEMP TABLE scope_ids (id bigint)")
            with (
                self._conn.cursor() as cursor,
                cursor.copy("COPY scope_ids (id) FROM STDIN") as copy,
            ):
                for r in rows:
                    copy.write_row((r.segment_id,))
            self._conn.execute("ANALYZE scope_ids")
        self._scope = ("temp", None)

    # -- the queue ----------------------------------------------------------------

    def start_run(self) -> None:
        """Fresh attempt budgets for the rows of this scope untouched since the run began.

        A run here is the time during which any worker is live: a worker that joins others
        keeps their retry schedule, the first worker after a pause resets it, as SQLite does.
        """
        with self._must("start"):
            self._conn.execute(
                "UPDATE segments s SET run_attempts = 0, last_kind = NULL, next_at = 0 "
                f"WHERE {self._scope_sql() or 'TRUE'} AND s.status <> 'processing' "
                "AND (s.run_attempts > 0 OR s.next_at > 0 OR s.last_kind IS NOT NULL) "
                "AND coalesce(s.updated_at, 0) < (SELECT extract(epoch FROM min(w.started_at)) "
                "  FROM workers w "
                "  WHERE w.last_heartbeat + make_interval(secs => w.lease_s) >= now())",
                self._scope_params(),
            )

    def claim(self, limit: int, now: float) -> list[Job]:
        """Take over expired leases first, then claim due pending segments, up to `limit`.

        Under `--max-global N` all claimers serialise on one advisory lock and count the
        `processing` rows, so the total in flight can never pass N. A segment whose `.part`
        lock another process holds is left alone: its owner is alive and still writing.
        """
        self.flush()
        if limit <= 0 or self._locks is None or not self._usable():
            return []
        clock = time.monotonic()
        self._busy = {sid: until for sid, until in self._busy.items() if until > clock}
        locked: list[int] = []
        try:
            with self._conn.transaction():
                slots = self._free_slots(limit)
                for which, most in ((_TAKEOVER, limit), (_PENDING, slots)):
                    want = min(most, limit - len(locked))
                    if want > 0:
                        locked += self._lock_candidates(which, want, now)
                self._capped = not locked and slots == 0
                if self._capped:
                    self._conn.execute(
                        "UPDATE workers SET capped_at = now() WHERE id = %s", (self._me,)
                    )
                rows = (
                    self._conn.execute(
                        _TAKE,
                        {"me": self._me, "lease": self._lease, "now": now, "ids": locked},
                    ).fetchall()
                    if locked
                    else []
                )
        except BaseException as exc:
            for segment_id in locked:
                self._locks.release(segment_id)
            if isinstance(exc, psycopg.OperationalError):
                self._lost(exc)
                return []
            raise
        with self._held_lock:
            self._held.update(row[0] for row in rows)
        return jobs_from(rows)

    def _free_slots(self, limit: int) -> int:
        """Up to `limit` within --max-global, and while others wait, a fair share at most.

        Without the fair share a worker takes back each slot it frees at once, and one
        that started later may wait for the whole run, its host's bandwidth unused.
        """
        if self._max_global is None:
            return limit
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (CLAIM_LOCK,))
        in_flight, live = _counts(self._conn.execute(_CAP_USE).fetchone())
        free = self._max_global - in_flight
        if free > 0:
            free = min(free, self._fair_share(self._max_global, live) - len(self._held_ids()))
        return max(0, min(limit, free))

    def _fair_share(self, cap: int, live: int) -> int:
        """What this worker may hold while others wait: N // workers while one of them has
        less, else N / workers rounded up, so that all N slots are in use (N=4, 3 workers:
        2, 1, 1); with nobody waiting, all of N."""
        floor = max(1, cap // max(live, 1))
        ceil = -(-cap // max(live, 1))
        below_floor, below_ceil = _counts(
            self._conn.execute(
                _WAITING, {"me": self._me, "recent": CAPPED_RECENT, "floor": floor, "ceil": ceil}
            ).fetchone()
        )
        if below_floor:
            return floor
        return ceil if below_ceil else cap

    def _lock_candidates(self, which: str, want: int, now: float) -> list[int]:
        """Row-lock up to `want` candidates, keep those whose `.part` lock we get."""
        assert self._locks is not None
        skip = [*self._held_ids(), *self._busy]
        ids = self._conn.execute(
            _CANDIDATES.format(scope=self._scope_sql() or "TRUE", which=which),
            self._scope_params() | {"skip": skip, "limit": want, "now": now},
        ).fetchall()
        locked = []
        for (segment_id,) in ids:
            if self._locks.acquire(segment_id):
                locked.append(segment_id)
            else:
                self._busy[segment_id] = time.monotonic() + BUSY_RETRY
        return locked

    def next_due(self) -> float | None:
        """When to claim again: the earliest retry, or soon while others hold segments.

        A worker with nothing to claim waits while other workers hold segments of its scope,
        so it can take them over if their owner dies; None only when nothing is left.
        """
        self.flush()
        if self._capped:
            return time.time() + POLL
        if not self._usable():
            return max(self._retry_at - time.monotonic(), POLL) + time.time()
        params = self._scope_params() | {"held": self._held_ids()}
        try:
            pending = self._conn.execute(
                _NEXT_RETRY.format(scope=self._scope_sql() or "TRUE"), params
            )
            retry = pending.fetchone()
            leased = self._conn.execute(
                _NEXT_LEASE.format(scope=self._scope_sql() or "TRUE"), params
            )
            lease_left = leased.fetchone()
        except psycopg.OperationalError as exc:
            self._lost(exc)
            return time.time() + POLL
        now = time.time()
        dues = [float(retry[0])] if retry else []
        if lease_left and lease_left[0] is not None:
            dues.append(now + min(float(lease_left[0]), HELD_POLL))
        return max(min(dues), now + POLL) if dues else None

    def flush(self) -> None:
        """Commit the buffered outcomes in one transaction, each only if we still own the row.

        If PostgreSQL is gone the outcomes stay buffered and the connection is retried with
        backoff; nothing is marked that was not recorded, and nothing is recorded twice.
        """
        if not self._buffer or not self._usable():
            return
        batch = list(self._buffer)
        seq = self._seq + 1
        now = time.time()
        try:
            with self._conn.transaction():
                applied = self._apply(batch, now, self._me)
                self._conn.execute("UPDATE workers SET flushed = %s WHERE id = %s", (seq, self._me))
        except psycopg.OperationalError as exc:
            self._uncertain = (seq, len(batch))
            self._lost(exc)
            return
        self._committed(seq, batch, applied)

    def _committed(self, seq: int, batch: list[Outcome], applied: dict[int, bool]) -> None:
        """Bookkeeping once a batch is in: leave the buffer, unlock finished segments."""
        self._seq, self._uncertain = seq, None
        for outcome in batch:
            self._buffer.popleft()
            if not isinstance(outcome, _TERMINAL):
                continue
            recorded = applied.get(id(outcome), True)
            if isinstance(outcome, Done) and outcome.status == Status.SUCCESS and recorded:
                self._files += 1
                self._bytes += outcome.size
            if not recorded and not isinstance(outcome, Parked):
                _warn(
                    f"segment {outcome.segment_id}: its outcome was not recorded because "
                    "another worker holds it now (this worker's lease had run out)"
                )
            with self._held_lock:
                self._held.discard(outcome.segment_id)
            if self._locks:
                self._locks.release(outcome.segment_id)

    def _held_ids(self) -> list[int]:
        with self._held_lock:
            return list(self._held)

    # -- the connection -------------------------------------------------------------

    def _usable(self) -> bool:
        """True with a working connection; after a loss, reconnect when the backoff allows."""
        if not self._conn.closed and not self._conn.broken:
            return True
        if time.monotonic() < self._retry_at:
            return False
        try:
            self._conn = _connect(self._spec)
            self._resync()
        except psycopg.OperationalError as exc:
            self._lost(exc)
            return False
        if self._down_since is not None:
            _warn(
                f"reconnected to the state DB {self.where} after "
                f"{time.monotonic() - self._down_since:.1f}s"
            )
        self._down_since, self._delay = None, BACKOFF_FIRST
        return True

    def _lost(self, exc: psycopg.OperationalError) -> None:
        """Note a failed statement; a lost connection is retried with capped backoff."""
        if not self._conn.closed and not self._conn.broken:
            return  # e.g. a deadlock victim: the connection is fine, the next call retries
        self._conn.close()
        if self._down_since is None:
            self._down_since = time.monotonic()
            _warn(
                f"lost the state DB {self.where} ({_why(exc, self._spec)}); retrying, "
                "downloads in flight go on"
            )
        self._retry_at = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, BACKOFF_MAX)

    def _resync(self) -> None:
        """After a reconnect: settle the batch lost mid-commit, hand back stray claims."""
        if not self._me:
            return
        with self._conn.transaction():
            row = self._conn.execute(
                "SELECT flushed FROM workers WHERE id = %s", (self._me,)
            ).fetchone()
            if self._uncertain and row and row[0] >= self._uncertain[0]:
                seq, size = self._uncertain
                self._committed(seq, [self._buffer[i] for i in range(size)], {})
            # A claim that was lost mid-commit may have marked rows we never got.
            self._conn.execute(
                f"UPDATE segments SET {_RELEASED} WHERE worker = %(me)s "
                "AND status = 'processing' AND NOT (id = ANY(%(held)s))",
                {"me": self._me, "held": self._held_ids()},
            )

    @contextmanager
    def _must(self, what: str) -> Iterator[None]:
        """One transaction that must succeed now (planning, starting): no DB, no run."""
        try:
            with self._conn.transaction():
                yield
        except psycopg.OperationalError as exc:
            raise StateUnavailable(
                f"{what}: lost the state DB {self.where}: {_why(exc, self._spec)}; run again"
            ) from None

    def _connection(self) -> psycopg.Connection[Row]:
        """The connection for a read or a command's write, reconnecting at once if lost."""
        self._retry_at = 0.0
        if not self._usable():
            raise StateUnavailable(
                f"cannot reach the state DB {self.where}; what was not recorded is still "
                "to do: run again"
            )
        return self._conn

    def _unavailable(self, exc: psycopg.OperationalError) -> StateUnavailable:
        return StateUnavailable(
            f"lost the state DB {self.where}: {_why(exc, self._spec)}; run again"
        )

    # -- reading --------------------------------------------------------------------

    @property
    def worker_id(self) -> str | None:
        """This worker's id in the workers table (host:pid:random), None if not a worker."""
        return self._me

    def workers(self) -> list[WorkerStatus]:
        """Every registered worker: live ones, and lost ones while they still hold segments."""
        with self._reading():
            rows = self._query(_WORKERS, {})
        return [
            WorkerStatus(
                id=r[0],
                host=r[1],
                pid=r[2],
                started=float(r[3]),
                last_heartbeat=float(r[4]),
                heartbeat_age=float(r[5]),
                claimed=r[6],
                files=r[7],
                bytes=r[8],
                rate=r[9],
                live=r[10],
                limits=json.loads(r[11]),
            )
            for r in rows
        ]

    # -- dialect hooks (state.sql) --------------------------------------------------------

    @classmethod
    def sql(cls, text: str) -> str:
        """`:name` parameters as psycopg's `%(name)s`."""
        return _placeholders(text)

    def _query(self, sql: str, params: Params) -> list[Row]:
        return self._conn.execute(sql, params).fetchall()

    def _execute(self, sql: str, params: Params) -> int:
        return self._conn.execute(sql, params).rowcount

    @contextmanager
    def _reading(self) -> Iterator[None]:
        self.flush()
        self._connection()
        try:
            yield
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from None

    @contextmanager
    def _writing(self) -> Iterator[None]:
        conn = self._connection()
        try:
            with conn.transaction():
                yield
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from None

    def _stream(self, sql: str, params: Params) -> Iterator[Row]:
        """A server-side cursor: the rows never sit in memory together."""
        self.flush()
        conn = self._connection()
        try:
            with conn.transaction(), conn.cursor(name="tfbulk_finished") as cursor:
                cursor.execute(sql, params)
                while rows := cursor.fetchmany(STREAM_BATCH):
                    yield from rows
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from None

    def _scope_sql(self) -> str | None:
        """The rows of this worker's plan (or of a dry run's temporary scope)."""
        if self._scope is None:
            return None
        if self._scope[0] == "temp":
            return "s.id IN (SELECT id FROM pg_temp.scope_ids)"
        return (
            "EXISTS (SELECT 1 FROM plan_members m "
            "WHERE m.plan_id = %(plan)s AND m.segment_id = s.id)"
        )

    def _scope_params(self) -> dict[str, object]:
        return {"plan": self._scope[1]} if self._scope and self._scope[0] == "plan" else {}

    def _any(self, column: str, name: str) -> str:
        return f"{column} = ANY(:{name})"

    def _ids(self, ids: list[int]) -> object:
        return ids


def _connect(spec: str) -> psycopg.Connection:
    """A connection in autocommit mode (transactions are explicit) on the tfbulk schema.

    Keepalives and a TCP user timeout make a vanished server or host an error within
    seconds instead of a hang; values in the URL win over these defaults.
    """
    params = CONNECT_DEFAULTS | conninfo_to_dict(spec)
    conn = psycopg.connect(make_conninfo("", **params), autocommit=True)
    conn.execute(f"SET search_path TO {PG_SCHEMA}")
    return conn


def _counts(row: Row | None) -> tuple[int, int]:
    """A row of two counts (aggregates always return one)."""
    assert row is not None
    return int(row[0]), int(row[1])


def _streamed(rows: Iterable[PlanRow] | PlanQuery) -> Iterable[PlanRow]:
    """The rows, as workers fingerprint them: a server cannot read a snapshot on our disk."""
    if isinstance(rows, PlanQuery):
        raise TypeError("a PostgreSQL store plans streamed rows, never a PlanQuery")
    return rows


def _why(exc: psycopg.Error, spec: str) -> str:
    """The driver's first line, with the URL's password scrubbed out."""
    lines = str(exc).strip().splitlines()
    return scrub(lines[0] if lines else type(exc).__name__, spec)


def _warn(text: str) -> None:
    sys.stderr.write(f"tfbulk: warning: {text}\n")
    sys.stderr.flush()
