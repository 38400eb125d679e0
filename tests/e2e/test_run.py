"""`tfbulk run` end to end: every file lands byte-identical, reruns fetch nothing new."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading

from tests.conftest import Workspace, child_env, wait_for
from tfbulk.origin import Fault
from tfbulk.origin.sample import guitar_catalogue


def test_full_run_is_byte_identical(ws: Workspace) -> None:
    result = ws.run("--json")
    assert result.code == 0, result.stderr
    ws.assert_all_identical()
    summary = result.json
    expected = len(ws.downloadable())
    assert summary["total"] == summary["success"] == expected
    assert summary["failed"] == summary["pending"] == summary["processing"] == 0
    assert summary["exit_code"] == 0 and summary["elapsed_s"] > 0
    assert summary["bytes"] == sum(len(ws.expected(s)) for _, s in ws.downloadable())
    assert {c["id"] for c in summary["courses"]} == {c.course_id for c in ws.catalogue}
    assert ws.part_files() == []


def test_segments_without_video_are_never_requested(ws: Workspace) -> None:
    assert ws.run().code == 0
    requested = {r.path for r in ws.origin.log}
    without_video = {
        ws.url_path(s.segment_id) for c in ws.catalogue for s in c.segments if s.video is None
    }
    assert without_video and not requested & without_video


def test_rerun_downloads_nothing(ws: Workspace) -> None:
    assert ws.run().code == 0
    requests = len(ws.origin.log)
    again = ws.run("--json")
    assert again.code == 0
    assert len(ws.origin.log) == requests
    assert again.json["success"] == len(ws.downloadable())
    assert again.json["downloaded_bytes"] == 0


def test_newer_snapshot_adds_only_new_segments(ws: Workspace) -> None:
    assert ws.run().code == 0
    before = {r.path for r in ws.origin.log}
    ws.write_catalogue(guitar_catalogue(4, 10))
    result = ws.run("--json")
    assert result.code == 0
    fetched = [r.path for r in ws.origin.log[len(before) :]]
    new_course = {ws.url_path(s) for c, s in ws.downloadable() if c == 4}
    assert set(fetched) == new_course
    assert result.json["total"] == len(ws.downloadable())
    ws.assert_all_identical()


def test_changed_video_field_is_downloaded_again(ws: Workspace) -> None:
    assert ws.run().code == 0
    course = ws.catalogue[0]
    changed = next(s for s in course.segments if s.video)
    snapshot = ws.snapshot
    import sqlite3

    with sqlite3.connect(snapshot) as conn:
        conn.execute(
            "UPDATE segments SET video = ? WHERE id = ?",
            (changed.video + "_v2", changed.segment_id),
        )
    ws.origin.content.change(ws.url_path(changed.segment_id))
    count = len(ws.origin.log)
    assert ws.run().code == 0
    assert [r.path for r in ws.origin.log[count:]] == [ws.url_path(changed.segment_id)]
    assert ws.file_of(course.course_id, changed.segment_id).read_bytes() == ws.expected(
        changed.segment_id
    )


def test_valid_file_already_there_is_skipped(ws: Workspace) -> None:
    course_id, segment_id = ws.downloadable()[0]
    target = ws.file_of(course_id, segment_id)
    target.parent.mkdir(parents=True)
    target.write_bytes(ws.expected(segment_id))
    result = ws.run("--json")
    assert result.code == 0
    assert result.json["skipped"] == 1
    assert ws.url_path(segment_id) not in {r.path for r in ws.origin.log}


def test_error_page_at_final_path_is_replaced(ws: Workspace) -> None:
    course_id, segment_id = ws.downloadable()[0]
    target = ws.file_of(course_id, segment_id)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"<html>AccessDenied</html>".ljust(4096))
    assert ws.run().code == 0
    assert target.read_bytes() == ws.expected(segment_id)


def test_scope_flags(ws: Workspace) -> None:
    first, second = ws.catalogue[0], ws.catalogue[1]
    one_segment = next(s.segment_id for s in second.segments if s.video)
    result = ws.run("--course", str(first.course_id), "--segment", str(one_segment), "--json")
    assert result.code == 0
    fetched = {r.path for r in ws.origin.log}
    wanted = {ws.url_path(s) for c, s in ws.downloadable() if c == first.course_id}
    assert fetched == wanted | {ws.url_path(one_segment)}
    assert result.json["total"] == len(fetched)


def test_limit_courses(ws: Workspace) -> None:
    result = ws.run("--limit-courses", "2", "--json")
    assert result.code == 0
    assert [c["id"] for c in result.json["courses"]] == [1, 2]


def test_dry_run_writes_nothing(ws: Workspace) -> None:
    total = len(ws.downloadable())
    result = ws.run("--dry-run")
    assert result.code == 0
    assert f"to download: {total}" in result.stdout
    assert not ws.dest.exists()
    assert ws.origin.log == []
    assert ws.run("--course", "1").code == 0
    in_course_1 = sum(1 for c, _ in ws.downloadable() if c == 1)
    data = ws.run("--dry-run", "--json").json
    assert data["already_done"] == in_course_1
    assert data["to_download"] == total - in_course_1
    assert data["segments"] == total


def test_concurrency_is_a_hard_bound(ws: Workspace) -> None:
    ws.origin.speed = 400_000
    assert ws.run("--concurrency", "3").code == 0
    assert ws.origin.max_in_flight == 3
    ws.assert_all_identical()


def test_json_mode_keeps_stdout_clean(ws: Workspace) -> None:
    ws.origin.add_fault(ws.url_path(ws.downloadable()[0][1]), Fault(status=404, times=0))
    result = ws.run("--json")
    assert result.code == 1
    data = json.loads(result.stdout)
    assert data["failed"] == 1 and data["exit_code"] == 1
    assert "failed" in result.stderr


def test_files_and_folders_have_fixed_modes_whatever_the_umask(ws: Workspace) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tfbulk", *ws.run_args()],
        capture_output=True,
        text=True,
        cwd=ws.root,
        check=False,
        env=child_env(),
        preexec_fn=lambda: os.umask(0o077),
    )
    assert proc.returncode == 0, proc.stderr
    for path in ws.final_files():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
    mode = stat.S_IMODE(ws.state.stat().st_mode)
    assert not mode & stat.S_IWOTH


def test_log_file_has_events_and_no_secrets(ws: Workspace) -> None:
    log = ws.root / "run.log"
    segment = ws.downloadable()[0][1]
    ws.origin.add_fault(ws.url_path(segment), Fault(status=403, times=1))
    assert ws.run("--log-file", str(log)).code == 0
    assert ws.run("--log-file", str(log)).code == 0
    text = log.read_text()
    events = [json.loads(line) for line in text.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds.count("run_start") == 2 and kinds.count("run_end") == 2
    assert kinds.count("segment_success") == len(ws.downloadable())
    assert "segment_start" in kinds
    assert "Signature=" not in text and "Key-Pair-Id=" not in text
    assert "BEGIN" not in text


def test_progress_forced_on_without_terminal(ws: Workspace) -> None:
    result = ws.run("--progress")
    assert result.code == 0
    assert "segments" in result.stdout


def test_no_progress_output_has_no_escape_codes(ws: Workspace) -> None:
    ws.origin.add_fault(ws.url_path(ws.downloadable()[0][1]), Fault(status=404, times=0))
    result = ws.run("--no-progress", "--stats-interval", "0.05s")
    assert result.code == 1
    assert "\x1b" not in result.stdout + result.stderr
    assert "failed: segment" in result.stdout


def test_background_run_is_observable_with_status(ws: Workspace) -> None:
    ws.origin.speed = 100_000
    proc = ws.start("--concurrency", "2")
    try:
        wait_for(lambda: len(ws.final_files()) >= 2, what="first files")
        status = ws.cli("status", "--dest", str(ws.dest), "--json")
        assert status.code == 0
        assert status.json["total"] == len(ws.downloadable())
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == 0


def test_one_held_body_never_holds_the_other_downloads_back(ws: Workspace) -> None:
    """A body that stops half-way keeps its own slot only: the other slot serves the rest
    (over cleartext, waiting to multiplex on the first connection would park them all)."""
    ws.write_catalogue(guitar_catalogue(1, 8))
    (course_id, held), *others = ws.downloadable()
    gate = threading.Event()
    ws.origin.add_fault(ws.url_path(held), Fault(gate=gate))
    # No timeout may free a parked transfer: only a second connection lets the others run.
    proc = ws.start("--concurrency", "2", "--http", "2", "--connect-timeout", "10m")
    try:
        wait_for(
            lambda: all(ws.file_of(c, s).exists() for c, s in others),
            timeout=60,
            what="every other segment finished while the first one is held",
        )
        assert not ws.file_of(course_id, held).exists()
    finally:
        gate.set()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    ws.assert_all_identical()
