"""The PostgreSQL store's schema: versioned steps, applied once by whichever worker comes first.

Every table lives in its own `tfbulk` schema, so the queue can share a database with other
applications. `meta.schema_version` says which steps a database has had; workers starting
together serialise on an advisory lock, and DDL is transactional, so a half-migrated
database cannot be seen.
"""

from __future__ import annotations

import psycopg

from tfbulk.errors import BadInput

SCHEMA = "tfbulk"
SCHEMA_VERSION = 2
MIGRATE_LOCK = 0x7466_0001  # advisory lock keys: "tf" + a number per purpose

# Step N brings a database from version N-1 to N. Never edit a released step; add one.
STEPS: dict[int, str] = {
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
    # Each worker's operator limits (--bwlimit, --max-rps, ...), as JSON, for `status`.
    2: """
ALTER TABLE workers ADD COLUMN limits text NOT NULL DEFAULT '{}';
""",
}


def schema_version(conn: psycopg.Connection) -> int:
    """The database's version: 0 when tfbulk has never been there."""
    found = conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.meta",)).fetchone()
    if not found or found[0] is None:
        return 0
    row = conn.execute(f"SELECT value FROM {SCHEMA}.meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: psycopg.Connection, where: str) -> None:
    """Bring the schema to SCHEMA_VERSION; refuse a database from a newer tfbulk."""
    if schema_version(conn) == SCHEMA_VERSION:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {SCHEMA}.meta (key text PRIMARY KEY, value text NOT NULL)"
        )
        version = schema_version(conn)
        if version > SCHEMA_VERSION:
            raise BadInput(
                f"state DB {where} has schema version {version}, newer than this tfbulk "
                f"({SCHEMA_VERSION}); upgrade tfbulk"
            )
        for step in range(version + 1, SCHEMA_VERSION + 1):
            conn.execute(STEPS[step])
        conn.execute(
            f"INSERT INTO {SCHEMA}.meta (key, value) VALUES ('schema_version', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )


def check_version(conn: psycopg.Connection, where: str) -> None:
    """Readers (status, failed, retry) need the schema there, and not from a newer tfbulk."""
    version = schema_version(conn)
    if version == 0:
        raise BadInput(f"no tfbulk state in {where}; run `tfbulk run --state ...` first")
    if version > SCHEMA_VERSION:
        raise BadInput(
            f"state DB {where} has schema version {version}, newer than this tfbulk "
            f"({SCHEMA_VERSION}); upgrade tfbulk"
        )
