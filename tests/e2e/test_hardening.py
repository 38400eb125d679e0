"""Tried as an adversary would: links planted under --dest, names at the file system's
limits, state that cannot be created, a second run on the same folder, absurd flags, empty
scopes, and counts that must agree wherever they are shown."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import Workspace, wait_for
from tfbulk.errors import StateUnavailable
from tfbulk.origin import Fault
from tfbulk.origin.sample import SampleCourse, SampleSegment, guitar_catalogue
from tfbulk.state.sqlite import SQLiteStore


def failed(ws: Workspace) -> dict[int, dict]:
    data = ws.cli("failed", "--dest", str(ws.dest), "--json").json
    return {item["segment_id"]: item for item in data}


def first_segment(ws: Workspace) -> tuple[int, int]:
    return ws.downloadable()[0]


def assert_others_identical(ws: Workspace, *, but: set[int]) -> None:
    for course_id, segment_id in ws.downloadable():
        if segment_id not in but:
            assert ws.file_of(course_id, segment_id).read_bytes() == ws.expected(segment_id)


# -- nothing outside --dest ------------------------------------------------------------


def test_a_part_planted_as_a_symlink_is_never_written_through(
    ws: Workspace, tmp_path: Path
) -> None:
    course_id, segment_id = first_segment(ws)
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"precious")
    folder = ws.dest / str(course_id)
    folder.mkdir(parents=True)
    (folder / f"{segment_id}.mp4.part").symlink_to(victim)
    result = ws.run()
    assert result.code == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert victim.read_bytes() == b"precious"
    assert not (folder / f"{segment_id}.mp4").exists()
    assert "is a symlink" in failed(ws)[segment_id]["error"]
    assert_others_identical(ws, but={segment_id})


def test_a_folder_planted_as_a_symlink_is_never_created_through(
    ws: Workspace, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    course_id, _ = first_segment(ws)
    ws.dest.mkdir(parents=True)
    (ws.dest / str(course_id)).symlink_to(outside)
    result = ws.run("--path-template", "{course_id}/{channel_id}/{segment_id}.mp4")
    assert result.code == 1, result.stderr
    assert list(outside.iterdir()) == [], "a folder was created outside --dest"
    errors = failed(ws)
    course_segments = {sid for cid, sid in ws.downloadable() if cid == course_id}
    assert set(errors) == course_segments
    assert all("is a symlink" in item["error"] for item in errors.values())


def test_a_final_name_planted_as_a_symlink_is_replaced_not_written_through(
    ws: Workspace, tmp_path: Path
) -> None:
    course_id, segment_id = first_segment(ws)
    victim = tmp_path / "victim.mp4"
    victim.write_bytes(ws.expected(segment_id))  # a valid video behind the link
    folder = ws.dest / str(course_id)
    folder.mkdir(parents=True)
    final = folder / f"{segment_id}.mp4"
    final.symlink_to(victim)
    result = ws.run()
    assert result.code == 0, result.stderr
    assert not final.is_symlink()
    ws.assert_all_identical()
    assert victim.read_bytes() == ws.expected(segment_id)


def test_a_state_folder_planted_as_a_symlink_is_refused(ws: Workspace, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    ws.dest.mkdir(parents=True)
    (ws.dest / ".tfbulk").symlink_to(outside)
    result = ws.run()
    assert result.code == 2
    assert ".tfbulk is a symlink" in result.stderr and result.stderr.count("\n") == 1
    assert list(outside.iterdir()) == []


# -- one segment never aborts a run -----------------------------------------------------


def test_a_name_too_long_for_its_part_is_refused_at_plan_time(ws: Workspace) -> None:
    """A 255-byte name passes the file system, its 260-byte `.part` would not: refused
    with the reason when planned, the run goes on, and every rerun behaves the same."""
    long_name = "v" * 255
    videos = [f"mp4:course/{long_name}", "mp4:course/short"]
    ws.write_catalogue(
        [
            SampleCourse(
                1,
                "Long",
                (10,),
                tuple(SampleSegment(500 + i, 10, v, "L") for i, v in enumerate(videos)),
            )
        ]
    )
    template = ("--path-template", "{course_id}/{video_name}")
    for _ in range(2):
        result = ws.run(*template, "--json")
        assert result.code == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert result.json["success"] + result.json["skipped"] == 1
        assert result.json["processing"] == 0 and result.json["pending"] == 0
        assert "file name longer than 250 bytes" in failed(ws)[500]["error"]
    assert (ws.dest / "1" / "short").read_bytes() == ws.expected(501)


# -- bad input caught up front ------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "cause"),
    [
        ("/sys/tfbulk-test/state.db", "Operation not permitted"),
        ("{root}", "a folder is in the way"),
        ("{snapshot}/state.db", "Not a directory"),
    ],
)
def test_a_state_db_that_cannot_be_created_is_exit_2(ws: Workspace, state: str, cause: str) -> None:
    path = state.format(root=ws.root, snapshot=ws.snapshot)
    result = ws.run("--state", path)
    assert result.code == 2
    assert result.stderr == (
        f"tfbulk: error: cannot create the state DB {path}: {cause}; "
        "pass --state PATH on a writable disk, or fix the permissions\n"
    )


def test_a_second_run_on_the_same_dest_exits_3_whatever_its_state(ws: Workspace) -> None:
    ws.write_catalogue(guitar_catalogue(3, 12))
    ws.origin.speed = 100_000
    gate = threading.Event()  # the first run cannot finish before the second has tried
    ws.origin.add_fault(ws.url_path(ws.downloadable()[-1][1]), Fault(gate=gate))
    first = ws.start("--concurrency", "2")
    try:
        wait_for(lambda: ws.part_files() or ws.final_files(), what="the first run writing")
        second = ws.run("--state", str(ws.root / "elsewhere.db"))
        assert second.code == 3
        assert f"PID {first.pid}" in second.stderr and str(ws.dest) in second.stderr
        assert second.stderr.count("\n") == 1
        assert not (ws.root / "elsewhere.db").exists()
    finally:
        gate.set()
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)


def test_concurrency_over_the_maximum_is_exit_2(ws: Workspace) -> None:
    result = ws.run("--concurrency", "100000")
    assert result.code == 2
    assert result.stderr == ("tfbulk: error: --concurrency 100000 is more than the maximum, 1024\n")


def test_ctrl_c_stops_a_run_at_the_maximum_concurrency_promptly(ws: Workspace) -> None:
    ws.write_catalogue(guitar_catalogue(8, 40))
    ws.origin.speed = 20_000
    proc = ws.start("--concurrency", "1024")
    wait_for(lambda: len(ws.part_files()) >= 20, what="many downloads in flight")
    asked = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert time.monotonic() - asked < 15, "Ctrl-C took too long"


def test_a_snapshot_with_nothing_to_download_is_exit_2(ws: Workspace) -> None:
    with sqlite3.connect(ws.snapshot) as conn:
        conn.execute("UPDATE segments SET video = NULL")
    segments = sum(len(course.segments) for course in ws.catalogue)
    for extra in ((), ("--dry-run",)):
        result = ws.run(*extra)
        assert result.code == 2
        assert result.stderr == (
            f"tfbulk: error: nothing to download: the snapshot has {segments} segments, "
            f"{segments} without a video and 0 without a course; a downloadable segment has "
            "a video like mp4:course/lesson\n"
        )
    assert not ws.dest.exists(), "an exit-2 run wrote something"


def test_a_scope_that_selects_nothing_is_exit_2_naming_the_filter(ws: Workspace) -> None:
    downloadable = len(ws.downloadable())
    for extra in ((), ("--dry-run",)):
        result = ws.run("--course", "999", "--segment", "5", *extra)
        assert result.code == 2
        assert result.stderr == (
            "tfbulk: error: nothing to download: --course 999 --segment 5 selects none of "
            f"the snapshot's {downloadable} downloadable segments; check the ids\n"
        )
    assert not ws.dest.exists()


def test_expires_over_a_day_is_warned_about(ws: Workspace) -> None:
    result = ws.cli(
        "sign", "https://d.example.net/a.mp4", "--key-pair-id", "K", "--private-key",
        str(ws.keys.private), "--expires", "2d",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert result.stderr == (
        "tfbulk: warning: --expires 2d is over 24 hours: a leaked URL stays valid that long; "
        "each request is signed as it is sent, so minutes are enough\n"
    )


# -- honest counts ------------------------------------------------------------------------


def test_downloaded_bytes_count_what_a_stopped_run_received(ws: Workspace) -> None:
    """After SIGTERM, `downloaded_bytes` is every byte received: the finished files and
    the `.part` files the next run resumes (a fresh folder, so nothing else is there)."""
    ws.write_catalogue(guitar_catalogue(3, 12))
    for _, segment_id in ws.downloadable():
        ws.origin.content.set_size(ws.url_path(segment_id), 200_000)
    ws.origin.speed = 150_000
    proc = ws.start("--concurrency", "4", "--json")
    wait_for(
        lambda: sum(p.stat().st_size for p in ws.part_files()) > 100_000,
        what=".part files with bytes in them",
    )
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    on_disk = sum(p.stat().st_size for p in ws.part_files() + ws.final_files())
    assert json.loads(out)["downloaded_bytes"] == on_disk > 0


def test_attempts_agree_in_the_log_line_the_summary_and_failed(ws: Workspace) -> None:
    """A 403 is retried at once, then a 503 later, then a 404 fails it: three attempts,
    whatever shows them."""
    course_id, segment_id = first_segment(ws)
    path = ws.url_path(segment_id)
    for status in (403, 503, 404):
        ws.origin.add_fault(path, Fault(status=status, times=1))
    log = ws.root / "log.jsonl"
    result = ws.run("--course", str(course_id), "--no-progress", "--log-file", str(log))
    assert result.code == 1, result.stderr
    assert f"failed: segment {segment_id} (course {course_id}) after 3 attempts" in result.stdout
    assert failed(ws)[segment_id]["attempts"] == 3
    events = [json.loads(line) for line in log.read_text().splitlines()]
    (failure,) = [e for e in events if e.get("event") == "segment_failed"]
    assert failure["attempts"] == 3
    summary_row = next(line for line in result.stdout.splitlines() if f"{segment_id} " in line)
    assert " 3 " in summary_row


def test_a_state_db_lost_as_the_engine_starts_is_one_line_and_75(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine runs in a task group beside its watchers; what it raises must reach the
    CLI as itself, not as the group's traceback (a worker starting as PostgreSQL restarted)."""

    def lost(_store: SQLiteStore) -> None:
        raise StateUnavailable("start: lost the state DB here; run again")

    monkeypatch.setattr(SQLiteStore, "start_run", lost)
    result = ws.run("--no-progress")
    assert result.code == 75, result.stderr
    assert result.stderr == "tfbulk: error: start: lost the state DB here; run again\n"
