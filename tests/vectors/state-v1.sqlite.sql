-- The SQLite state DB as tfbulk wrote it at schema version 1 (sqlite-utils DDL, commit 3fc3d94 on).
CREATE TABLE "meta" (
   "key" TEXT PRIMARY KEY,
   "value" TEXT
);
CREATE TABLE "courses" (
   "id" INTEGER PRIMARY KEY,
   "title" TEXT
);
CREATE TABLE "segments" (
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
CREATE INDEX "idx_segments_status_course_id_id"
    ON "segments" ("status", "course_id", "id");
CREATE INDEX "idx_segments_course_id_status"
    ON "segments" ("course_id", "status");
CREATE INDEX "idx_segments_path"
    ON "segments" ("path");
INSERT INTO meta (key, value) VALUES ('schema_version', '1');
