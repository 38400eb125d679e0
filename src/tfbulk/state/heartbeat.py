"""A worker's pulse: renew the leases of the segments it holds and refresh its `workers` row
(and fold the status counts that statements appended).

It runs on its own thread and connection, so a long flush or a blocked claim never lets
a lease lapse, and it stops with the process: a worker that is killed or loses its host
stops renewing, and its leases run out for the others to take over.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

import psycopg

HEARTBEATS_PER_LEASE = 3
MAX_INTERVAL = 10.0
RATE_WINDOW = 30.0  # seconds of history behind the throughput shown by `tfbulk status`

_RENEW = """
UPDATE segments SET lease_until = now() + make_interval(secs => %(lease)s)
WHERE id IN (
  SELECT id FROM segments
  WHERE worker = %(me)s AND status = 'processing' AND id = ANY(%(held)s)
  ORDER BY id FOR UPDATE)
"""
_BEAT = """
INSERT INTO workers (id, host, pid, plan_id, lease_s, files, bytes, rate)
VALUES (%(me)s, %(host)s, %(pid)s, %(plan)s, %(lease)s, %(files)s, %(bytes)s, %(rate)s)
ON CONFLICT (id) DO UPDATE SET last_heartbeat = now(), plan_id = excluded.plan_id,
  files = excluded.files, bytes = excluded.bytes, rate = excluded.rate
"""
# The changes of counts that statements appended, folded into one row per course and
# status (in key order: two workers folding at once never deadlock).
FOLD_COUNTS = """
WITH folded AS (DELETE FROM count_changes RETURNING course_id, status, n, bytes)
INSERT INTO counts AS k (course_id, status, n, bytes)
SELECT course_id, status, sum(n), sum(bytes) FROM folded
GROUP BY course_id, status ORDER BY course_id, status
ON CONFLICT (course_id, status) DO UPDATE SET n = k.n + excluded.n, bytes = k.bytes + excluded.bytes
"""
# Lost workers stay listed while they hold segments, then make way.
_PRUNE = """
DELETE FROM workers w
WHERE w.last_heartbeat + make_interval(secs => w.lease_s) < now()
  AND NOT EXISTS (SELECT 1 FROM segments s WHERE s.worker = w.id AND s.status = 'processing')
"""


def interval_for(lease: float) -> float:
    """Several beats per lease, so one late beat never costs a lease."""
    return min(lease / HEARTBEATS_PER_LEASE, MAX_INTERVAL)


class Heartbeat:
    """The renewing thread; `beat()` is called directly once, before `start()`, to register."""

    def __init__(
        self,
        *,
        connect: Callable[[], psycopg.Connection],
        worker: str,
        lease: float,
        held: Callable[[], list[int]],
        progress: Callable[[], tuple[int, int]],
        plan: Callable[[], int | None],
    ) -> None:
        self._connect = connect
        self._worker = worker
        self._lease = lease
        self._held = held
        self._progress = progress
        self._plan = plan
        self._conn: psycopg.Connection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._samples: deque[tuple[float, int]] = deque()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tfbulk-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
        if self._conn is not None:
            self._conn.close()

    def beat(self) -> None:
        """Renew held leases and the worker row in one transaction (raises if the DB is gone)."""
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        files, size = self._progress()
        params = {
            "me": self._worker,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "plan": self._plan(),
            "lease": self._lease,
            "held": self._held(),
            "files": files,
            "bytes": size,
            "rate": self._rate(size),
        }
        with self._conn.transaction():
            self._conn.execute(_RENEW, params)
            self._conn.execute(_BEAT, params)
            self._conn.execute(_PRUNE)
            self._conn.execute(FOLD_COUNTS)

    def _run(self) -> None:
        while not self._stop.wait(interval_for(self._lease)):
            try:
                self.beat()
            except psycopg.Error:
                # The main connection reports the outage and reconnects; we retry next beat.
                if self._conn is not None:
                    self._conn.close()
                self._conn = None

    def _rate(self, size: int) -> float:
        """Bytes per second of finished files over the last RATE_WINDOW seconds."""
        now = time.monotonic()
        self._samples.append((now, size))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW:
            self._samples.popleft()
        first_time, first_size = self._samples[0]
        return (size - first_size) / (now - first_time) if now > first_time else 0.0
