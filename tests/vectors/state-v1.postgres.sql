-- The PostgreSQL state schema as tfbulk wrote it at version 1 (pgschema.py, commit c633f32 on).
CREATE SCHEMA tfbulk;
SET search_path TO tfbulk;
CREATE TABLE tfbulk.meta (key text PRIMARY KEY, value text NOT NULL);
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
INSERT INTO meta (key, value) VALUES ('schema_version', '1');
