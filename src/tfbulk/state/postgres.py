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

import hashlib
import json
import os
import secrets
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tfbulk.errors import BadInput, StateUnavailable
from tfbulk.pipeline.plan import PlanRow
from tfbulk.settings import STATE_DIR, Sharing
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
from tfbulk.state.heartbeat import Heartbeat
from tfbulk.state.partlock import PartLocks
from tfbulk.state.pgschema import SCHEMA, check_version, migrate, schema_version
from tfbulk.state.url import redact_url, scrub

PLAN_LOCK = 0x7466_0002
CLAIM_LOCK = 0x7466_0003
PLAN_KEEP = "1 hour"  # an unused plan's scope is kept this long, then dropped
POLL = 0.25  # work is due but could not be claimed (global cap, locks): ask again this soon
CAPPED_RECENT = 4 * POLL  # a worker held back by --max-global this recently is waiting
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

_COLUMNS = (
    "id, course_id, channel_id, video, title, path, error, etag, last_modified, "
    "expected_size, size, run_attempts, last_kind, replace, attempts"
)
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
RETURNING {_COLUMNS}
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
_NEXT_LEASE = """
SELECT extract(epoch FROM min(s.lease_until) - now()) FROM segments s
WHERE s.status = 'processing' AND {scope} AND NOT (s.id = ANY(%(held)s))
"""
_MINE = "WHERE id = %(id)s AND worker = %(me)s AND status = 'processing'"
_RELEASE = "status = 'pending', worker = NULL, lease_until = NULL"
_APPLY: dict[type, str] = {
    Validated: "UPDATE segments SET etag = %(etag)s, last_modified = %(modified)s, "
    f"expected_size = %(expected)s {_MINE}",
    Attempted: "UPDATE segments SET attempts = attempts + 1, run_attempts = run_attempts + 1, "
    f"last_kind = %(kind)s, error = %(error)s, updated_at = %(now)s {_MINE}",
    Retry: f"""UPDATE segments SET {_RELEASE}, attempts = attempts + 1,
        run_attempts = run_attempts + 1, last_kind = %(kind)s, error = %(error)s,
        next_at = %(next_at)s, updated_at = %(now)s,
        etag = CASE WHEN %(restart)s THEN NULL ELSE etag END,
        expected_size = CASE WHEN %(restart)s THEN NULL ELSE expected_size END {_MINE}""",
    Done: f"""UPDATE segments SET status = %(status)s, worker = NULL, lease_until = NULL,
        size = %(size)s, md5 = %(md5)s, etag = coalesce(%(etag)s, etag),
        attempts = attempts + %(counted)s, run_attempts = run_attempts + %(counted)s,
        error = NULL, replace = false, finished_at = %(finished)s, updated_at = %(now)s {_MINE}""",
    Failed: f"""UPDATE segments SET status = 'failed', worker = NULL, lease_until = NULL,
        last_kind = coalesce(%(kind)s, last_kind), error = %(error)s,
        attempts = attempts + %(counted)s, run_attempts = run_attempts + %(counted)s,
        finished_at = %(finished)s, updated_at = %(now)s {_MINE}""",
    Parked: f"UPDATE segments SET {_RELEASE}, updated_at = %(now)s {_MINE}",
}
_TERMINAL = (Retry, Done, Failed, Parked)

# Planning: rows arrive in a temporary table, only what differs touches `segments`.
_INCOMING = """
CREATE TEMP TABLE incoming (
  n bigint GENERATED ALWAYS AS IDENTITY, id bigint, course_id bigint, channel_id bigint,
  video text, title text, path text, error text) ON COMMIT DROP
"""
_DIFFERS = """s.video IS DISTINCT FROM i.video OR s.path IS DISTINCT FROM i.path
  OR s.title IS DISTINCT FROM i.title OR s.course_id IS DISTINCT FROM i.course_id
  OR s.channel_id IS DISTINCT FROM i.channel_id"""
_RESET = "s.video IS DISTINCT FROM excluded.video OR s.path IS DISTINCT FROM excluded.path"
_UPSERT = f"""
WITH latest AS (SELECT DISTINCT ON (id) * FROM incoming ORDER BY id, n DESC),
changed AS (
  SELECT i.* FROM latest i LEFT JOIN segments s ON s.id = i.id
  WHERE s.id IS NULL OR {_DIFFERS}),
written AS (
  INSERT INTO segments AS s (id, course_id, channel_id, video, title, path, status, error,
                             planned_at, updated_at)
  SELECT id, course_id, channel_id, video, title, path,
         CASE WHEN error IS NULL THEN 'pending' ELSE 'failed' END, error, %(now)s, %(now)s
  FROM changed ORDER BY id
  ON CONFLICT (id) DO UPDATE SET
    course_id = excluded.course_id,
    channel_id = excluded.channel_id,
    title = excluded.title,
    replace = CASE WHEN s.video IS DISTINCT FROM excluded.video THEN true ELSE s.replace END,
    status = CASE WHEN {_RESET} THEN excluded.status ELSE s.status END,
    error = CASE WHEN {_RESET} THEN excluded.error ELSE s.error END,
    attempts = CASE WHEN {_RESET} THEN 0 ELSE s.attempts END,
    size = CASE WHEN {_RESET} THEN NULL ELSE s.size END,
    md5 = CASE WHEN {_RESET} THEN NULL ELSE s.md5 END,
    etag = CASE WHEN {_RESET} THEN NULL ELSE s.etag END,
    last_modified = CASE WHEN {_RESET} THEN NULL ELSE s.last_modified END,
    expected_size = CASE WHEN {_RESET} THEN NULL ELSE s.expected_size END,
    worker = CASE WHEN {_RESET} THEN NULL ELSE s.worker END,
    lease_until = CASE WHEN {_RESET} THEN NULL ELSE s.lease_until END,
    video = excluded.video,
    path = excluded.path,
    updated_at = excluded.updated_at
  RETURNING (s.xmax = 0) AS inserted)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written
"""


_RECORD_COLUMNS = "s.id, s.course_id, s.title, s.path, s.status, s.attempts, s.size, s.error, s.md5"


class PostgresStore:
    """A connection to the shared queue; with `worker=True`, also one of its workers."""

    def __init__(self, spec: str, conn: psycopg.Connection) -> None:
        self._spec = spec
        self.where = redact_url(spec)
        self._conn = conn
        self._buffer: deque[Outcome] = deque()
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
        cls, spec: str, *, create: bool, worker: bool, dest: Path | None, sharing: Sharing
    ) -> PostgresStore:
        """Connect (and on first use create the schema); a worker also registers itself."""
        where = redact_url(spec)
        try:
            conn = _connect(spec)
        except psycopg.Error as exc:
            raise BadInput(f"cannot connect to the state DB {where}: {_why(exc, spec)}") from None
        try:
            if create:
                migrate(conn, where)
            else:
                check_version(conn, where)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, psycopg.Error):
                raise BadInput(f"cannot use the state DB {where}: {_why(exc, spec)}") from None
            raise
        store = cls(spec, conn)
        if worker:
            if dest is None:
                raise ValueError("a worker needs the destination folder for its .part locks")
            try:
                store._register(dest, sharing)
            except BaseException:
                store.close()
                raise
        return store

    @staticmethod
    def exists(spec: str) -> bool:
        """Whether tfbulk has ever used this database (dry runs must not create anything)."""
        try:
            conn = _connect(spec)
        except psycopg.Error as exc:
            raise BadInput(
                f"cannot connect to the state DB {redact_url(spec)}: {_why(exc, spec)}"
            ) from None
        with conn:
            return schema_version(conn) > 0

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
                        f"UPDATE segments SET {_RELEASE} "
                        "WHERE worker = %(me)s AND status = 'processing'",
                        {"me": self._me},
                    )
                    self._conn.execute("DELETE FROM workers WHERE id = %s", (self._me,))
        if self._locks:
            self._locks.close()
        self._conn.close()

    # -- planning -----------------------------------------------------------------

    def plan(self, rows: Iterable[PlanRow], titles: Mapping[int, str | None]) -> PlanChanges:
        """Upsert the planned rows once per distinct plan; every worker scopes to its members.

        Each worker streams its rows into a temporary table and fingerprints them; under an
        advisory lock, the first worker with a new fingerprint writes the differences and
        the plan's members, and the next ones find the plan there and only adopt it.
        """
        now = time.time()
        with self._writing("plan"):
            self._conn.execute(_INCOMING)
            fingerprint, courses = self._load_incoming(rows, titles)
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (PLAN_LOCK,))
            latest = self._conn.execute(
                "SELECT id, fingerprint FROM plans ORDER BY id DESC LIMIT 1"
            ).fetchone()
            if latest and latest[1] == fingerprint:
                self._conn.execute("UPDATE plans SET used_at = now() WHERE id = %s", (latest[0],))
                self._scope = ("plan", latest[0])
                return PlanChanges(new=0, changed=0)
            return self._write_plan(now, fingerprint, courses, titles)

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
        self, now: float, fingerprint: str, courses: set[int], titles: Mapping[int, str | None]
    ) -> PlanChanges:
        self._conn.execute("ANALYZE incoming")
        row = self._conn.execute(_UPSERT, {"now": now}).fetchone()
        new, changed = row if row else (0, 0)
        with self._conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO courses AS c (id, title) VALUES (%s, %s) "
                "ON CONFLICT (id) DO UPDATE SET title = excluded.title "
                "WHERE c.title IS DISTINCT FROM excluded.title",
                [(cid, titles.get(cid)) for cid in sorted(courses)],
            )
        plan_row = self._conn.execute(
            "INSERT INTO plans (fingerprint, segments) "
            "VALUES (%s, (SELECT count(DISTINCT id) FROM incoming)) RETURNING id",
            (fingerprint,),
        ).fetchone()
        assert plan_row is not None
        plan_id = plan_row[0]
        self._conn.execute(
            "INSERT INTO plan_members (plan_id, segment_id) SELECT DISTINCT %s, id FROM incoming",
            (plan_id,),
        )
        self._refuse_shared_paths(plan_id)
        # Fresh statistics, or the first claims of a big plan scan instead of walking the index.
        self._conn.execute("ANALYZE segments, plan_members")
        self._conn.execute(
            "DELETE FROM plans p WHERE p.id <> %s "
            f"AND p.used_at < now() - interval '{PLAN_KEEP}' "
            "AND NOT EXISTS (SELECT 1 FROM workers w WHERE w.plan_id = p.id)",
            (plan_id,),
        )
        self._scope = ("plan", plan_id)
        return PlanChanges(new=new, changed=changed)

    def scope_planned(self, rows: Iterable[PlanRow]) -> None:
        """Scope without writing (dry runs): the ids only go to a temporary table."""
        with self._writing("dry run"):
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

    def _refuse_shared_paths(self, plan_id: int) -> None:
        clash = self._conn.execute(
            "SELECT s.path, count(*), min(s.id), max(s.id) "
            "FROM plan_members m JOIN segments s ON s.id = m.segment_id "
            "WHERE m.plan_id = %s AND s.path IS NOT NULL "
            "GROUP BY s.path HAVING count(*) > 1 LIMIT 1",
            (plan_id,),
        ).fetchone()
        if clash:
            path, count, first, last = clash
            raise BadInput(
                f"--path-template maps {count} segments (e.g. {first} and {last}) to the same "
                f"file {path}; include {{segment_id}} in it"
            )

    # -- the queue ----------------------------------------------------------------

    def start_run(self) -> None:
        """Fresh attempt budgets for the rows of this scope untouched since the run began.

        A run here is the time during which any worker is live: a worker that joins others
        keeps their retry schedule, the first worker after a pause resets it, as SQLite does.
        """
        with self._writing("start"):
            self._conn.execute(
                "UPDATE segments s SET run_attempts = 0, last_kind = NULL, next_at = 0 "
                f"WHERE {self._scope_sql()} AND s.status <> 'processing' "
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
        jobs = [_job(row) for row in rows]
        jobs.sort(key=lambda job: (job.course_id, job.segment_id))
        return jobs

    def _free_slots(self, limit: int) -> int:
        """Up to `limit` within --max-global, and while others wait, a fair share at most.

        Without the fair share a worker takes back each slot it frees at once, and one
        that started later may wait for the whole run, its host's bandwidth unused.
        """
        if self._max_global is None:
            return limit
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (CLAIM_LOCK,))
        in_flight, live = self._conn.execute(_CAP_USE).fetchone()  # type: ignore[misc]
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
        below_floor, below_ceil = self._conn.execute(  # type: ignore[misc]
            _WAITING, {"me": self._me, "recent": CAPPED_RECENT, "floor": floor, "ceil": ceil}
        ).fetchone()
        if below_floor:
            return floor
        return ceil if below_ceil else cap

    def _lock_candidates(self, which: str, want: int, now: float) -> list[int]:
        """Row-lock up to `want` candidates, keep those whose `.part` lock we get."""
        assert self._locks is not None
        skip = [*self._held_ids(), *self._busy]
        ids = self._conn.execute(
            _CANDIDATES.format(scope=self._scope_sql(), which=which),
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
            pending = self._conn.execute(_NEXT_RETRY.format(scope=self._scope_sql()), params)
            retry = pending.fetchone()
            leased = self._conn.execute(_NEXT_LEASE.format(scope=self._scope_sql()), params)
            lease_left = leased.fetchone()
        except psycopg.OperationalError as exc:
            self._lost(exc)
            return time.time() + POLL
        now = time.time()
        dues = [float(retry[0])] if retry else []
        if lease_left and lease_left[0] is not None:
            dues.append(now + min(float(lease_left[0]), HELD_POLL))
        return max(min(dues), now + POLL) if dues else None

    def record(self, outcome: Outcome) -> None:
        """Buffer an outcome; safe to call from the event loop while a flush runs."""
        self._buffer.append(outcome)

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
                applied = {
                    id(outcome): self._apply(outcome, now)
                    for outcome in sorted(batch, key=lambda o: o.segment_id)
                }
                self._conn.execute("UPDATE workers SET flushed = %s WHERE id = %s", (seq, self._me))
        except psycopg.OperationalError as exc:
            self._uncertain = (seq, len(batch))
            self._lost(exc)
            return
        self._committed(seq, batch, applied)

    def _apply(self, outcome: Outcome, now: float) -> bool:
        cursor = self._conn.execute(_APPLY[type(outcome)], _params(outcome, now, self._me))
        return cursor.rowcount > 0

    def _committed(self, seq: int, batch: list[Outcome], applied: dict[int, bool]) -> None:
        """Bookkeeping once a batch is in: leave the buffer, unlock finished segments."""
        self._seq, self._uncertain = seq, None
        for outcome in batch:
            self._buffer.popleft()
            if not isinstance(outcome, _TERMINAL):
                continue
            recorded = applied.get(id(outcome), True)
            if isinstance(outcome, Done) and outcome.status == "success" and recorded:
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
                f"UPDATE segments SET {_RELEASE} WHERE worker = %(me)s "
                "AND status = 'processing' AND NOT (id = ANY(%(held)s))",
                {"me": self._me, "held": self._held_ids()},
            )

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """One transaction that must succeed now (planning, starting): no DB, no run."""
        try:
            with self._conn.transaction():
                yield
        except psycopg.OperationalError as exc:
            raise StateUnavailable(
                f"{what}: lost the state DB {self.where}: {_why(exc, self._spec)}; run again"
            ) from None

    def _reading(self) -> psycopg.Connection:
        """The connection for a read, reconnecting at once if it was lost."""
        self._retry_at = 0.0
        if not self._usable():
            raise StateUnavailable(
                f"cannot reach the state DB {self.where}; what was not recorded is still "
                "to do: run again"
            )
        return self._conn

    # -- reading --------------------------------------------------------------------

    def summary(self, *, scoped: bool = True, course: int | None = None) -> Summary:
        """Counts per course and status: of this run's scope, or of the whole queue."""
        self.flush()
        where, params = self._filter(scoped=scoped, course=course)
        rows = self._read(
            "SELECT s.course_id, c.title, s.status, count(*), coalesce(sum(s.size), 0)::bigint "
            f"FROM segments s LEFT JOIN courses c ON c.id = s.course_id {where} "
            "GROUP BY s.course_id, c.title, s.status ORDER BY s.course_id",
            params,
        )
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
        self.flush()
        where, params = self._filter(scoped=scoped, course=course)
        if status:
            where = f"{where} {'AND' if where else 'WHERE'} s.status = %(status)s"
            params |= {"status": status}
        rows = self._read(
            f"SELECT {_RECORD_COLUMNS} FROM segments s {where} "
            "ORDER BY s.course_id, s.id LIMIT %(limit)s",
            params | {"limit": limit if limit >= 0 else None},
        )
        return [SegmentRecord(*row) for row in rows]

    def finished(self, *, course: int | None = None) -> Iterator[SegmentRecord]:
        """Every `success`/`skipped` segment, streamed by a server-side cursor."""
        self.flush()
        where, params = self._filter(scoped=False, course=course)
        where = f"{where} {'AND' if where else 'WHERE'} s.status IN ('success', 'skipped')"
        conn = self._reading()
        try:
            with conn.transaction(), conn.cursor(name="tfbulk_finished") as cursor:
                cursor.execute(
                    f"SELECT {_RECORD_COLUMNS} FROM segments s {where} ORDER BY s.course_id, s.id",
                    params,  # type: ignore[arg-type]
                )
                while rows := cursor.fetchmany(1000):
                    yield from (SegmentRecord(*row) for row in rows)
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from None

    def requeue(self, reasons: Mapping[int, str]) -> int:
        """Back to pending with the reason, replacing whatever is at the final path."""
        conn = self._reading()
        try:
            with conn.transaction(), conn.cursor() as cursor:
                cursor.executemany(
                    "UPDATE segments SET status = 'pending', replace = true, error = %s, "
                    "size = NULL, md5 = NULL, run_attempts = 0, last_kind = NULL, next_at = 0, "
                    "worker = NULL, lease_until = NULL WHERE id = %s",
                    [(reason, sid) for sid, reason in reasons.items()],
                )
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from None
        return len(reasons)

    def requeue_failed(self, courses: Iterable[int], segments: Iterable[int]) -> int:
        """`tfbulk retry`: failed → pending (all, or only those courses/segments)."""
        courses, segments = list(courses), list(segments)
        where = "status = 'failed' AND path IS NOT NULL"
        if courses or segments:
            where += " AND (course_id = ANY(%(courses)s) OR id = ANY(%(segments)s))"
        conn = self._reading()
        try:
            cursor = conn.execute(
                "UPDATE segments SET status = 'pending', run_attempts = 0, last_kind = NULL, "
                f"next_at = 0, error = NULL WHERE {where}",
                {"courses": courses, "segments": segments},
            )
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from None
        return cursor.rowcount

    @property
    def worker_id(self) -> str | None:
        """This worker's id in the workers table (host:pid:random), None if not a worker."""
        return self._me

    def workers(self) -> list[WorkerStatus]:
        """Every registered worker: live ones, and lost ones while they still hold segments."""
        rows = self._read(
            "SELECT w.id, w.host, w.pid, extract(epoch FROM w.started_at), "
            "extract(epoch FROM w.last_heartbeat), extract(epoch FROM now() - w.last_heartbeat), "
            "(SELECT count(*) FROM segments s WHERE s.worker = w.id "
            "  AND s.status = 'processing'), "
            "w.files, w.bytes, w.rate, "
            "w.last_heartbeat + make_interval(secs => w.lease_s) >= now(), w.limits "
            "FROM workers w ORDER BY w.started_at, w.id",
            {},
        )
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

    def _read(self, sql: str, params: dict[str, object]) -> list[tuple]:
        conn = self._reading()
        try:
            return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: psycopg.OperationalError) -> StateUnavailable:
        return StateUnavailable(
            f"lost the state DB {self.where}: {_why(exc, self._spec)}; run again"
        )

    def _filter(self, *, scoped: bool, course: int | None) -> tuple[str, dict[str, object]]:
        clauses: list[str] = []
        params: dict[str, object] = {}
        if scoped and self._scope:
            clauses.append(self._scope_sql())
            params |= self._scope_params()
        if course is not None:
            clauses.append("s.course_id = %(course)s")
            params["course"] = course
        return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params

    def _scope_sql(self) -> str:
        """The rows of this worker's plan (or of a dry run's temporary scope)."""
        if self._scope is None:
            return "true"
        if self._scope[0] == "temp":
            return "s.id IN (SELECT id FROM pg_temp.scope_ids)"
        return (
            "EXISTS (SELECT 1 FROM plan_members m "
            "WHERE m.plan_id = %(plan)s AND m.segment_id = s.id)"
        )

    def _scope_params(self) -> dict[str, object]:
        return {"plan": self._scope[1]} if self._scope and self._scope[0] == "plan" else {}


def _params(outcome: Outcome, now: float, me: str | None) -> dict[str, object]:
    """The parameters of `_APPLY[type(outcome)]`."""
    common: dict[str, object] = {"id": outcome.segment_id, "me": me, "now": now}
    match outcome:
        case Validated(_, etag, modified, expected):
            return common | {"etag": etag, "modified": modified, "expected": expected}
        case Attempted(_, kind, error):
            return common | {"kind": str(kind), "error": error}
        case Retry(_, kind, error, next_at, restart):
            return common | {
                "kind": str(kind),
                "error": error,
                "next_at": next_at,
                "restart": restart,
            }
        case Done(_, status, size, md5, etag, finished):
            counted = int(status == "success")
            return common | {
                "status": status,
                "size": size,
                "md5": md5,
                "etag": etag,
                "counted": counted,
                "finished": finished,
            }
        case Failed(_, kind, error, attempted, finished):
            return common | {
                "kind": str(kind) if kind is not None else None,
                "error": error,
                "counted": int(attempted),
                "finished": finished,
            }
        case Parked():
            return common
    raise TypeError(f"unknown outcome {outcome!r}")


def _job(row: tuple) -> Job:
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


def _connect(spec: str) -> psycopg.Connection:
    """A connection in autocommit mode (transactions are explicit) on the tfbulk schema.

    Keepalives and a TCP user timeout make a vanished server or host an error within
    seconds instead of a hang; values in the URL win over these defaults.
    """
    params = CONNECT_DEFAULTS | conninfo_to_dict(spec)
    conn = psycopg.connect(**params, autocommit=True)  # type: ignore[arg-type]
    conn.execute(f"SET search_path TO {SCHEMA}")
    return conn


def _why(exc: psycopg.Error, spec: str) -> str:
    """The driver's first line, with the URL's password scrubbed out."""
    lines = str(exc).strip().splitlines()
    return scrub(lines[0] if lines else type(exc).__name__, spec)


def _warn(text: str) -> None:
    sys.stderr.write(f"tfbulk: warning: {text}\n")
    sys.stderr.flush()
