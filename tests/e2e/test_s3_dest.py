"""--dest s3://BUCKET/PREFIX: the real CLI downloading from the local origin into a real
S3-compatible server (moto on 127.0.0.1, tests/s3server.py)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from tests.conftest import Workspace, wait_for
from tests.s3server import ACCESS_KEY, SECRET_KEY, S3Server
from tfbulk.origin.faults import Fault

BUCKET = "tfbulk-test"
MiB = 1 << 20


def s3_env(ws: Workspace) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "XDG_STATE_HOME": str(ws.root / "state-home"),
        "HOME": str(ws.root),
    }


def s3_args(server: S3Server, prefix: str = "videos", *extra: str) -> list[str]:
    return ["--dest", f"s3://{BUCKET}/{prefix}", "--dest-endpoint-url", server.url, *extra]


def run_s3(ws: Workspace, server: S3Server, *extra: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return ws.run(*s3_args(server), *extra, env=env if env is not None else s3_env(ws))


def assert_bucket_identical(ws: Workspace, server: S3Server, prefix: str = "videos") -> None:
    expected = {
        f"{prefix}/{course_id}/{segment_id}.mp4": ws.expected(segment_id)
        for course_id, segment_id in ws.downloadable()
    }
    assert server.keys(BUCKET) == sorted(expected)
    for key, body in expected.items():
        assert server.object(BUCKET, key) == body, key
    assert server.open_uploads(BUCKET) == []


def test_a_run_fills_the_bucket_byte_identical(ws: Workspace, s3_server: S3Server) -> None:
    result = run_s3(ws, s3_server, "--json")
    assert result.code == 0, result.stderr
    summary = result.json
    assert summary["success"] == len(ws.downloadable())
    assert_bucket_identical(ws, s3_server)
    assert not ws.dest.exists()  # nothing on the local disk


def test_a_large_file_goes_up_in_parts(ws: Workspace, s3_server: S3Server) -> None:
    course_id, segment_id = ws.downloadable()[0]
    ws.origin.content.set_size(ws.url_path(segment_id), 12 * MiB + 12345)
    result = run_s3(ws, s3_server, "--dest-part-size", "5M")
    assert result.code == 0, result.stderr
    assert_bucket_identical(ws, s3_server)
    parts = s3_server.uploads(f"/{course_id}/{segment_id}.mp4")
    assert [q.split("&")[0] for q in parts] == ["partNumber=1", "partNumber=2", "partNumber=3"]
    body = ws.expected(segment_id)
    assert (
        hashlib.md5(s3_server.object(BUCKET, f"videos/{course_id}/{segment_id}.mp4")).digest()
        == hashlib.md5(body).digest()
    )


def test_a_second_run_skips_what_is_there(ws: Workspace, s3_server: S3Server) -> None:
    assert run_s3(ws, s3_server).code == 0
    puts_before = sum(1 for method, _, _ in s3_server.requests if method == "PUT")
    result = run_s3(ws, s3_server, "--state", str(ws.root / "fresh.db"), "--json")
    assert result.code == 0, result.stderr
    assert result.json["skipped"] == len(ws.downloadable())
    assert sum(1 for method, _, _ in s3_server.requests if method == "PUT") == puts_before


def test_the_state_db_defaults_to_the_users_state_folder(
    ws: Workspace, s3_server: S3Server
) -> None:
    result = run_s3(ws, s3_server)
    assert result.code == 0, result.stderr
    states = list((ws.root / "state-home" / "tfbulk").glob(f"{BUCKET}-*.db"))
    assert len(states) == 1
    assert str(states[0]) in result.stdout + result.stderr


def test_missing_credentials_exit_2_with_one_line(ws: Workspace, s3_server: S3Server) -> None:
    env = {"XDG_STATE_HOME": str(ws.root / "state-home"), "HOME": str(ws.root)}
    result = run_s3(ws, s3_server, env=env)
    assert result.code == 2
    assert "no AWS credentials found for --dest s3://" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_a_bad_endpoint_exits_2_with_one_line(ws: Workspace, s3_server: S3Server) -> None:
    dest = ("--dest", f"s3://{BUCKET}/videos", "--dest-endpoint-url", "http://127.0.0.1:9")
    result = ws.run(*dest, env=s3_env(ws))
    assert result.code == 2
    assert "cannot reach http://127.0.0.1:9" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (ws.root / "state-home").exists()


@pytest.mark.parametrize(
    ("dest", "fragment"),
    [("s3://UPPER/x", "is not an S3 bucket name"), ("s3://tfbulk-test/a/../b", ". or ..")],
)
def test_a_bad_s3_dest_exits_2(ws: Workspace, dest: str, fragment: str) -> None:
    result = ws.run("--dest", dest, env=s3_env(ws))
    assert result.code == 2
    assert fragment in result.stderr


def recorded_parts(state: Path, key: str) -> int:
    """Parts the run has recorded as stored for `key` (0 before its first)."""
    if not state.exists():
        return 0
    with contextlib.closing(sqlite3.connect(state)) as conn:
        try:
            row = conn.execute(
                "SELECT part_etags FROM s3_uploads WHERE object_key = ?", (key,)
            ).fetchone()
            validated = conn.execute(
                "SELECT count(*) FROM segments WHERE etag IS NOT NULL"
            ).fetchone()
        except sqlite3.OperationalError:  # not created yet
            return 0
    return len(json.loads(row[0])) if row and validated[0] else 0


def recorded_md5(state: Path, segment_id: int) -> str | None:
    with contextlib.closing(sqlite3.connect(state)) as conn:
        row = conn.execute("SELECT md5 FROM segments WHERE id = ?", (segment_id,))
        return row.fetchone()[0]


def killed_after_part_1(
    ws: Workspace, s3_server: S3Server, corrupt_at: int | None = None
) -> tuple[int, str, str, Path, list[str]]:
    """A run killed -9 once part 1 (of 5, 5 and 2 MiB) is recorded, its body held half-way:
    (segment id, origin path, object key, state DB, the run's arguments)."""
    course_id, segment_id = ws.downloadable()[0]
    path = ws.url_path(segment_id)
    ws.origin.content.set_size(path, 12 * MiB + 12345)
    gate = threading.Event()
    ws.origin.add_fault(path, Fault(gate=gate, corrupt_at=corrupt_at))
    key = f"videos/{course_id}/{segment_id}.mp4"
    state = ws.root / "s3-state.db"
    args = [*s3_args(s3_server), "--dest-part-size", "5M", "--state", str(state)]
    first = ws.start(*args, env=s3_env(ws))
    try:
        wait_for(lambda: recorded_parts(state, key) == 1, what="part 1 recorded")
    finally:
        first.kill()
        first.wait()
        gate.set()
    return segment_id, path, key, state, args


def test_a_killed_run_resumes_at_the_next_part_boundary(ws: Workspace, s3_server: S3Server) -> None:
    segment_id, path, key, state, args = killed_after_part_1(ws, s3_server)
    assert [q.split("&")[0] for q in s3_server.uploads(key)] == ["partNumber=1"]
    assert BUCKET not in s3_server.keys(BUCKET) and key not in s3_server.keys(BUCKET)

    again = ws.run(*args, env=s3_env(ws))
    assert again.code == 0, again.stderr
    numbers = [q.split("&")[0] for q in s3_server.uploads(key)]
    assert numbers == ["partNumber=1", "partNumber=2", "partNumber=3"]  # part 1 not again
    resumed = [r for r in ws.origin.log if r.path == path and r.range]
    # part 1 re-read to hash it only (its MD5 died with the first run), then the rest
    assert [r.range for r in resumed] == [f"bytes=0-{5 * MiB - 1}", f"bytes={5 * MiB}-"]
    assert_bucket_identical(ws, s3_server)
    assert recorded_parts(state, key) == 0
    # the whole MD5 was computed (and checked against the ETag) despite the resume
    assert recorded_md5(state, segment_id) == hashlib.md5(ws.expected(segment_id)).hexdigest()


def test_a_part_stored_from_damaged_bytes_is_found_before_the_object_appears(
    ws: Workspace, s3_server: S3Server
) -> None:
    # the first run receives part 1 with one byte flipped (same ETag), then is killed
    segment_id, _, key, state, args = killed_after_part_1(ws, s3_server, corrupt_at=MiB)

    again = ws.run(*args, env=s3_env(ws))  # the origin serves the right bytes now
    assert again.code == 0, again.stderr
    assert_bucket_identical(ws, s3_server)  # not the object with the damaged part 1
    numbers = [q.split("&")[0] for q in s3_server.uploads(key)]
    assert numbers == ["partNumber=1", "partNumber=1", "partNumber=2", "partNumber=3"]
    assert recorded_md5(state, segment_id) == hashlib.md5(ws.expected(segment_id)).hexdigest()
    with contextlib.closing(sqlite3.connect(state)) as conn:
        (attempts,) = conn.execute(
            "SELECT attempts FROM segments WHERE id = ?", (segment_id,)
        ).fetchone()
    assert attempts >= 2  # the resume check's failure counted as an attempt


def test_a_run_killed_before_the_completion_only_completes(
    ws: Workspace, s3_server: S3Server
) -> None:
    course_id, segment_id = ws.downloadable()[0]
    path = ws.url_path(segment_id)
    ws.origin.content.set_size(path, 12 * MiB + 12345)  # parts of 5, 5 and 2 MiB
    key = f"videos/{course_id}/{segment_id}.mp4"
    state = ws.root / "s3-state.db"
    args = [*s3_args(s3_server), "--dest-part-size", "5M", "--state", str(state)]
    completion = s3_server.hold("POST", "uploadId=")
    first = ws.start(*args, env=s3_env(ws))
    try:
        wait_for(
            lambda: completion.arrived.is_set() and recorded_parts(state, key) == 3,
            what="every part recorded, the completion sent",
        )
    finally:
        first.kill()
        first.wait()
        completion.release.set()
    s3_server.holds.clear()
    assert s3_server.open_uploads(BUCKET) == [key]
    fetched_before = len([r for r in ws.origin.log if r.path == path])
    parts_before = s3_server.uploads(key)

    again = ws.run(*args, env=s3_env(ws))
    assert again.code == 0, again.stderr
    assert len([r for r in ws.origin.log if r.path == path]) == fetched_before  # not fetched
    assert s3_server.uploads(key) == parts_before  # no part again
    completions = [r for r in s3_server.requests if r[0] == "POST" and r[1].endswith(key)]
    assert len([r for r in completions if r[2].startswith("uploadId=")]) == 2
    assert_bucket_identical(ws, s3_server)
    assert recorded_parts(state, key) == 0


def test_a_failed_segment_leaves_no_upload_behind(ws: Workspace, s3_server: S3Server) -> None:
    course_id, segment_id = ws.downloadable()[0]
    path = ws.url_path(segment_id)
    ws.origin.content.set_size(path, 12 * MiB)
    ws.origin.add_fault(path, Fault(drop_after=7 * MiB, times=1))  # part 1 stored, then cut
    ws.origin.add_fault(path, Fault(status=404, times=0))
    result = run_s3(ws, s3_server, "--dest-part-size", "5M", "--retries", "2")
    assert result.code == 1, result.stderr
    assert s3_server.open_uploads(BUCKET) == []
    assert f"videos/{course_id}/{segment_id}.mp4" not in s3_server.keys(BUCKET)
    hint = next(line for line in result.stdout.splitlines() if " retry " in line)
    assert hint.endswith(f"retry --dest s3://{BUCKET}/videos"), "the hint pastes as printed"


def test_status_failed_retry_read_the_buckets_state_db(ws: Workspace, s3_server: S3Server) -> None:
    assert run_s3(ws, s3_server).code == 0
    dest = ("--dest", f"s3://{BUCKET}/videos")
    status = ws.tfbulk("status", *dest, "--json", env=s3_env(ws))
    assert status.code == 0, status.stderr
    assert status.json["success"] == len(ws.downloadable())
    assert ws.tfbulk("failed", *dest, env=s3_env(ws)).code == 0
    assert ws.tfbulk("retry", *dest, env=s3_env(ws)).code == 0


def test_state_commands_with_an_s3_dest_import_no_http_stack(ws: Workspace) -> None:
    from tests.e2e.test_lazy_imports import loaded_by

    assert ws.run().code == 0
    for command in ("status", "failed", "retry"):
        args = (command, "--dest", f"s3://{BUCKET}/videos", "--state", str(ws.state))
        assert loaded_by(ws, *args) == []


def test_verify_heads_every_object_and_full_reads_them(ws: Workspace, s3_server: S3Server) -> None:
    assert run_s3(ws, s3_server).code == 0
    verify = ("verify", *s3_args(s3_server), "--json")
    clean = ws.tfbulk(*verify, env=s3_env(ws))
    assert clean.code == 0, clean.stderr
    assert clean.json["checked"] == len(ws.downloadable())
    (gone_course, gone), (bad_course, bad) = ws.downloadable()[:2]
    client = s3_server.client()
    client.delete_object(Bucket=BUCKET, Key=f"videos/{gone_course}/{gone}.mp4")
    damaged = bytearray(ws.expected(bad))
    damaged[-1] ^= 0xFF  # same size: only a read-back finds it
    client.put_object(Bucket=BUCKET, Key=f"videos/{bad_course}/{bad}.mp4", Body=bytes(damaged))
    quick = ws.tfbulk(*verify, "--dry-run", env=s3_env(ws))
    assert quick.code == 1
    assert {p["segment_id"]: p["reason"] for p in quick.json["problems"]} == {
        gone: "object is missing"
    }
    full = ws.tfbulk(*verify, "--full", env=s3_env(ws))
    assert full.code == 1
    reasons = {p["segment_id"]: p["reason"] for p in full.json["problems"]}
    assert reasons == {
        gone: "object is missing",
        bad: "object's MD5 differs from the one recorded at download",
    }
    assert full.json["requeued"] == 2
    again = run_s3(ws, s3_server)
    assert again.code == 0, again.stderr
    assert_bucket_identical(ws, s3_server)


def test_doctor_checks_the_bucket(ws: Workspace, s3_server: S3Server) -> None:
    base = ws.run_args()[1:11]  # snapshot, dest, URL template, key pair, private key
    good = ws.tfbulk("doctor", *base, *s3_args(s3_server), "--json", env=s3_env(ws))
    checks = {(c["area"], c["name"]): c for c in good.json["checks"]}
    assert checks[("destination", "bucket reachable")]["status"] == "ok", good.stdout
    bad = ws.tfbulk(
        "doctor", *base, *s3_args(s3_server), "--json", env={**s3_env(ws), "AWS_ACCESS_KEY_ID": ""}
    )
    checks = {(c["area"], c["name"]): c for c in bad.json["checks"]}
    assert checks[("destination", "bucket reachable")]["status"] == "fail"
    assert bad.code == 1


@pytest.mark.slow
def test_two_workers_share_one_bucket_and_one_postgresql_queue(
    ws: Workspace, s3_server: S3Server, pg_url: str
) -> None:
    args = [*s3_args(s3_server), "--state", pg_url, "--no-progress"]
    workers = [ws.start(*args, env=s3_env(ws)) for _ in range(2)]
    results = [worker.communicate(timeout=300) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], results
    assert_bucket_identical(ws, s3_server)
    puts = [
        path
        for method, path, query in s3_server.requests
        if method == "PUT" and path.endswith(".mp4")
    ]
    assert len(puts) == len(set(puts)) == len(ws.downloadable())  # each object stored once


def pg_worker_args(s3_server: S3Server, pg_url: str) -> list[str]:
    """A PostgreSQL worker into the bucket, 5 MiB parts, a lease short enough to expire."""
    state = ["--state", pg_url, "--lease", "2s", "--no-progress"]
    return [*s3_args(s3_server), "--dest-part-size", "5M", *state]


def pg_recorded(pg_url: str, key: str) -> tuple[str, int] | None:
    """The upload a worker recorded for `key` (its id and parts), once the segment's
    validator is in the queue too (a takeover resumes only with it)."""
    from tests.pgcluster import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        uploads = conn.execute("SELECT to_regclass('tfbulk.s3_uploads')").fetchone()[0]
        if uploads is None:
            return None
        row = conn.execute(
            "SELECT upload_id, part_etags FROM tfbulk.s3_uploads WHERE object_key = %s", (key,)
        ).fetchone()
        validated = conn.execute(
            "SELECT count(*) FROM tfbulk.segments WHERE etag IS NOT NULL"
        ).fetchone()[0]
    return (row[0], len(json.loads(row[1]))) if row and validated else None


@pytest.mark.slow
def test_a_postgresql_worker_takes_over_a_dead_workers_upload(
    ws: Workspace, s3_server: S3Server, pg_url: str
) -> None:
    course_id, segment_id = ws.downloadable()[0]
    path = ws.url_path(segment_id)
    ws.origin.content.set_size(path, 12 * MiB + 12345)  # parts of 5, 5 and 2 MiB
    gate = threading.Event()
    ws.origin.add_fault(path, Fault(gate=gate))  # the victim's body stops after part 1
    key = f"videos/{course_id}/{segment_id}.mp4"
    args = pg_worker_args(s3_server, pg_url)
    victim = ws.start(*args, env=s3_env(ws))
    try:
        wait_for(lambda: (pg_recorded(pg_url, key) or ("", 0))[1] == 1, what="part 1 recorded")
    finally:
        victim.kill()
        victim.wait()
        gate.set()
    upload_id = pg_recorded(pg_url, key)
    assert upload_id is not None
    served = len(ws.origin.log)

    heir = ws.start(*args, env=s3_env(ws))  # another process, once the lease has expired
    _, err = heir.communicate(timeout=300)
    assert heir.returncode == 0, err
    assert_bucket_identical(ws, s3_server)  # no upload left open either
    parts = s3_server.uploads(key)
    assert [q.split("&")[0] for q in parts] == ["partNumber=1", "partNumber=2", "partNumber=3"]
    assert {q.split("uploadId=")[1] for q in parts} == {upload_id[0]}  # the same upload
    later = [r.range for r in ws.origin.log[served:] if r.path == path]
    assert later == [f"bytes=0-{5 * MiB - 1}", f"bytes={5 * MiB}-"]  # re-read, then resumed
    assert pg_recorded(pg_url, key) is None
    from tests.pgcluster import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT status, md5 FROM tfbulk.segments WHERE id = %s", (segment_id,)
        ).fetchone()
    assert row == ("success", hashlib.md5(ws.expected(segment_id)).hexdigest())


@pytest.mark.slow
def test_a_worker_killed_during_its_first_part_leaves_no_orphan_upload(
    ws: Workspace, s3_server: S3Server, pg_url: str
) -> None:
    course_id, segment_id = ws.downloadable()[0]
    ws.origin.content.set_size(ws.url_path(segment_id), 12 * MiB + 12345)
    key = f"videos/{course_id}/{segment_id}.mp4"
    args = pg_worker_args(s3_server, pg_url)
    first_part = s3_server.hold("PUT", "partNumber=1&")  # the upload exists, no part yet
    victim = ws.start(*args, env=s3_env(ws))
    try:
        wait_for(first_part.arrived.is_set, what="part 1 on its way")
    finally:
        victim.kill()
        victim.wait()
        first_part.release.set()
    s3_server.holds.clear()
    assert s3_server.open_uploads(BUCKET) == [key]

    heir = ws.start(*args, env=s3_env(ws))
    _, err = heir.communicate(timeout=300)
    assert heir.returncode == 0, err
    assert_bucket_identical(ws, s3_server)  # the victim's upload was not left open
    assert len({q.split("uploadId=")[1] for q in s3_server.uploads(key)}) == 1
