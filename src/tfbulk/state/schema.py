"""The state DB's schema in both dialects, and the one way either is upgraded in place.

Step N brings a database from version N-1 to N; never edit a released step, add one. The
dialects share version numbers, so "version 2" means the same tables on SQLite and on
PostgreSQL. Each step runs in one transaction with the version bump, under the dialect's
write lock (DDL is transactional in both), so a half-migrated database is never seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Protocol

from tfbulk.errors import BadInput

SCHEMA_VERSION = 3
PG_SCHEMA = "tfbulk"  # PostgreSQL: every table in its own schema, to share a database
# PostgreSQL: whoever changes the schema holds this advisory lock (two workers starting
# together would otherwise both create a table, and one fails on pg_type's unique key).
MIGRATE_LOCK = 0x7466_0001  # advisory lock keys: "tf" + a number per purpose

# Version 1 is what tfbulk wrote before the stores shared one core (sqlite-utils' DDL).
SQLITE_STEPS: Mapping[int, str] = {
    1: """
CREATE TABLE IF NOT EXISTS "courses" ("id" INTEGER PRIMARY KEY, "title" TEXT);
CREATE TABLE IF NOT EXISTS "segments" (
   "id" INTEGER PRIMARY KEY,
   "course_id" INTEGER NOT NULL,
   "channel_id" INTEGER,
   "video" TEXT NOT NULL,
   "title" TEXT,
   "path" TEXT,
   "status" TEXT NOT NULL DEFAULT 'pending',
   "attempts" INTEGER NOT NULL DEFAULT 0,
   "run_attempts" INTEGER NOT NULL DEFAULT 0,
   "last_kind" TEXT,
   "error" TEXT,
   "next_at" REAL NOT NULL DEFAULT 0,
   "replace" INTEGER NOT NULL DEFAULT 0,
   "etag" TEXT,
   "last_modified" TEXT,
   "expected_size" INTEGER,
   "size" INTEGER,
   "md5" TEXT,
   "planned_at" REAL,
   "started_at" REAL,
   "finished_at" REAL,
   "updated_at" REAL
);
CREATE INDEX IF NOT EXISTS "idx_segments_status_course_id_id"
    ON "segments" ("status", "course_id", "id");
CREATE INDEX IF NOT EXISTS "idx_segments_course_id_status" ON "segments" ("course_id", "status");
CREATE INDEX IF NOT EXISTS "idx_segments_path" ON "segments" ("path");
""",
    # Same columns as PostgreSQL (so one set of transitions serves both), and counts per
    # course and status kept by triggers, so `status` reads a few rows instead of all.
    2: """
ALTER TABLE segments ADD COLUMN worker TEXT;
ALTER TABLE segments ADD COLUMN lease_until REAL;
CREATE TABLE counts (
  course_id INTEGER NOT NULL,
  status TEXT NOT NULL,
  n INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  PRIMARY KEY (course_id, status)
) WITHOUT ROWID;
INSERT INTO counts (course_id, status, n, bytes)
  SELECT course_id, status, count(*), coalesce(sum(size), 0) FROM segments
  GROUP BY course_id, status;
-- What a new run must reset: few rows once a queue is mostly done (see start_run).
CREATE INDEX segments_retried ON segments (status)
  WHERE run_attempts > 0 OR next_at > 0 OR last_kind IS NOT NULL;
CREATE TRIGGER counts_inserted AFTER INSERT ON segments BEGIN
  INSERT INTO counts (course_id, status, n, bytes)
  VALUES (new.course_id, new.status, 1, coalesce(new.size, 0))
  ON CONFLICT (course_id, status) DO UPDATE SET n = n + 1, bytes = bytes + excluded.bytes;
END;
CREATE TRIGGER counts_updated AFTER UPDATE OF course_id, status, size ON segments
WHEN old.course_id IS NOT new.course_id OR old.status IS NOT new.status
  OR old.size IS NOT new.size
BEGIN
  UPDATE counts SET n = n - 1, bytes = bytes - coalesce(old.size, 0)
  WHERE course_id = old.course_id AND status = old.status;
  INSERT INTO counts (course_id, status, n, bytes)
  VALUES (new.course_id, new.status, 1, coalesce(new.size, 0))
  ON CONFLICT (course_id, status) DO UPDATE SET n = n + 1, bytes = bytes + excluded.bytes;
END;
CREATE TRIGGER counts_deleted AFTER DELETE ON segments BEGIN
  UPDATE counts SET n = n - 1, bytes = bytes - coalesce(old.size, 0)
  WHERE course_id = old.course_id AND status = old.status;
END;
""",
    # Each PostgreSQL worker's limits: a SQLite store has no workers table.
    3: "",
}

POSTGRES_STEPS: Mapping[int, str] = {
    1: """
CREATE TABLE courses (id bigint PRIMARY KEY, title text);

CREATE TABLE segments (
  id bigint PRIMARY KEY,
  course_id bigint NOT NULL,
  channel_id bigint,
  video text NOT NULL,
  title text,
  path text,
  status text NOT NULL DEFAULT 'pending',
  attempts integer NOT NULL DEFAULT 0,
  run_attempts integer NOT NULL DEFAULT 0,
  last_kind text,
  error text,
  next_at double precision NOT NULL DEFAULT 0,
  replace boolean NOT NULL DEFAULT false,
  etag text,
  last_modified text,
  expected_size bigint,
  size bigint,
  md5 text,
  planned_at double precision,
  started_at double precision,
  finished_at double precision,
  updated_at double precision,
  worker text,
  lease_until timestamptz
);
CREATE INDEX segments_queue ON segments (status, course_id, id);
CREATE INDEX segments_due ON segments (status, next_at);
CREATE INDEX segments_course ON segments (course_id, status);
CREATE INDEX segments_path ON segments (path);
CREATE INDEX segments_held ON segments (worker, id) WHERE status = 'processing';

-- One row per distinct plan (snapshot rows + path template + scope); its members are the
-- scope of every worker that planned the same thing.
CREATE TABLE plans (
  id bigserial PRIMARY KEY,
  fingerprint text NOT NULL,
  segments integer NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  used_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE plan_members (
  plan_id bigint NOT NULL REFERENCES plans ON DELETE CASCADE,
  segment_id bigint NOT NULL,
  PRIMARY KEY (plan_id, segment_id)
);

CREATE TABLE workers (
  id text PRIMARY KEY,
  host text NOT NULL,
  pid integer NOT NULL,
  plan_id bigint,
  lease_s double precision NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  last_heartbeat timestamptz NOT NULL DEFAULT now(),
  files bigint NOT NULL DEFAULT 0,
  bytes bigint NOT NULL DEFAULT 0,
  rate double precision NOT NULL DEFAULT 0,
  flushed bigint NOT NULL DEFAULT 0,
  capped_at timestamptz
);
""",
    # Counts per course and status. Workers on many hosts must not queue on a few hot
    # rows, so each statement appends its net change to `count_changes` (no row is ever
    # contended) and heartbeats fold those into `counts`; readers add the two.
    2: """
CREATE TABLE counts (
  course_id bigint NOT NULL,
  status text NOT NULL,
  n bigint NOT NULL,
  bytes bigint NOT NULL,
  PRIMARY KEY (course_id, status)
);
CREATE TABLE count_changes (
  course_id bigint NOT NULL,
  status text NOT NULL,
  n bigint NOT NULL,
  bytes bigint NOT NULL
);
INSERT INTO counts (course_id, status, n, bytes)
  SELECT course_id, status, count(*), coalesce(sum(size), 0) FROM segments
  GROUP BY course_id, status;

CREATE INDEX segments_retried ON segments (status)
  WHERE run_attempts > 0 OR next_at > 0 OR last_kind IS NOT NULL;

CREATE FUNCTION tfbulk.count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO tfbulk.count_changes (course_id, status, n, bytes)
  SELECT course_id, status, count(*), coalesce(sum(size), 0) FROM new_rows
  GROUP BY course_id, status;
  RETURN NULL;
END $$;
CREATE FUNCTION tfbulk.count_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO tfbulk.count_changes (course_id, status, n, bytes)
  SELECT course_id, status, sum(n), sum(bytes) FROM (
    SELECT course_id, status, 1 AS n, coalesce(size, 0) AS bytes FROM new_rows
    UNION ALL
    SELECT course_id, status, -1, -coalesce(size, 0) FROM old_rows) AS t
  GROUP BY course_id, status HAVING sum(n) <> 0 OR sum(bytes) <> 0;
  RETURN NULL;
END $$;
CREATE FUNCTION tfbulk.count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO tfbulk.count_changes (course_id, status, n, bytes)
  SELECT course_id, status, -count(*), -coalesce(sum(size), 0) FROM old_rows
  GROUP BY course_id, status;
  RETURN NULL;
END $$;
CREATE TRIGGER segments_inserted AFTER INSERT ON segments
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION count_inserted();
CREATE TRIGGER segments_updated AFTER UPDATE ON segments
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION count_updated();
CREATE TRIGGER segments_deleted AFTER DELETE ON segments
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION count_deleted();
""",
    # Each worker's operator limits (--bwlimit, --max-rps, ...), as JSON, for `status`.
    3: """
ALTER TABLE workers ADD COLUMN limits text NOT NULL DEFAULT '{}';
""",
}


class Migratable(Protocol):
    """What a dialect offers the migration: its version, an exclusive transaction, DDL."""

    where: str

    def schema_version(self) -> int: ...

    def migration(self) -> AbstractContextManager[None]: ...

    def run_script(self, script: str) -> None: ...

    def set_schema_version(self, version: int) -> None: ...


def migrate(db: Migratable, steps: Mapping[int, str]) -> None:
    """Bring the schema to SCHEMA_VERSION; refuse a database from a newer tfbulk."""
    if db.schema_version() == SCHEMA_VERSION:
        return
    with db.migration():
        found = db.schema_version()  # again, under the lock: another process may have won
        refuse_newer(found, db.where)
        for step in range(found + 1, SCHEMA_VERSION + 1):
            if steps[step]:
                db.run_script(steps[step])
        if found != SCHEMA_VERSION:
            db.set_schema_version(SCHEMA_VERSION)


def refuse_newer(found: int, where: str) -> None:
    if found > SCHEMA_VERSION:
        raise BadInput(
            f"state DB {where} has schema version {found}, newer than this tfbulk "
            f"({SCHEMA_VERSION}); upgrade tfbulk"
        )
