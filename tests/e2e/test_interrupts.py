"""Killed, interrupted or timed-out runs resume where they stopped and lose nothing."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from tests.conftest import Workspace, wait_for
from tfbulk.origin import Fault, RequestRecord
from tfbulk.origin.sample import guitar_catalogue


@pytest.fixture
def slow_ws(ws: Workspace) -> Workspace:
    """Enough work at a throttled speed that a run is still busy when we act on it."""
    ws.write_catalogue(guitar_catalogue(4, 12))
    ws.origin.speed = 150_000
    return ws


def assert_no_half_files(ws: Workspace) -> None:
    """Every file at a final path is complete and correct, whatever happened."""
    for path in ws.final_files():
        segment_id = int(path.stem)
        assert path.read_bytes() == ws.expected(segment_id), f"half file at {path}"


def test_sigkill_mid_run_then_resume(slow_ws: Workspace) -> None:
    ws = slow_ws
    proc = ws.start("--concurrency", "4")
    wait_for(lambda: len(ws.final_files()) >= 5 and ws.part_files(), what="work in flight")
    proc.kill()
    proc.wait(timeout=10)
    assert_no_half_files(ws)
    done_before = {int(p.stem) for p in ws.final_files()}
    log_before = len(ws.origin.log)

    result = ws.run("--json")
    assert result.code == 0, result.stderr
    ws.assert_all_identical()
    assert ws.part_files() == []
    again = [r for r in ws.origin.log[log_before:] if r.status in (200, 206)]
    refetched = {int(r.path.rsplit("/", 1)[1].split(".")[0]) for r in again}
    assert not refetched & done_before, "finished files were downloaded again"
    assert result.json["success"] + result.json["skipped"] == len(ws.downloadable())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_cleanly_with_130_then_resumes(slow_ws: Workspace, signum: int) -> None:
    ws = slow_ws
    proc = ws.start("--concurrency", "4", "--no-progress")
    wait_for(lambda: len(ws.final_files()) >= 3 and ws.part_files(), what="work in flight")
    stopped_at = time.monotonic()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=10)
    assert time.monotonic() - stopped_at < 5, "in-flight downloads must be parked promptly"
    assert proc.returncode == 130, err
    assert "stopping: interrupted" in out
    assert "run the same command again to resume" in out
    assert "Traceback" not in err
    assert_no_half_files(ws)
    states = ws.states()
    assert "processing" not in states.values(), "in-flight segments were not parked"
    assert ws.part_files(), "partial downloads should be kept for Range resume"
    log_before = len(ws.origin.log)

    assert ws.run().code == 0
    ws.assert_all_identical()
    resumed = [r for r in ws.origin.log[log_before:] if r.range]
    assert resumed and all(resumed_by_range(ws, r) for r in resumed), resumed


def resumed_by_range(ws: Workspace, request: RequestRecord) -> bool:
    """206 for the rest of the body; 416 when the signal came after the last byte was kept
    (a `.part` that already holds the whole file: nothing more to send)."""
    if request.status == 206:
        return True
    size = len(ws.expected(int(request.path.rsplit("/", 1)[1].split(".")[0])))
    return request.status == 416 and request.range == f"bytes={size}-"


def test_max_time_exits_75_and_resumes(slow_ws: Workspace) -> None:
    ws = slow_ws
    result = ws.run("--concurrency", "2", "--max-time", "1", "--json")
    assert result.code == 75, result.stderr
    data = result.json
    assert data["exit_code"] == 75 and data["pending"] > 0
    assert data["processing"] == 0
    assert_no_half_files(ws)
    assert ws.run().code == 0
    ws.assert_all_identical()


def hold_last_segment(ws: Workspace) -> threading.Event:
    """A run cannot finish before the test opens this gate, however slow the machine."""
    gate = threading.Event()
    ws.origin.add_fault(ws.url_path(ws.downloadable()[-1][1]), Fault(gate=gate))
    return gate


def test_second_run_on_same_state_exits_3(slow_ws: Workspace) -> None:
    ws = slow_ws
    gate = hold_last_segment(ws)
    proc = ws.start("--concurrency", "2")
    try:
        wait_for(lambda: ws.final_files(), what="first run downloading")
        second = ws.run()
        assert second.code == 3
        assert "holds the lock" in second.stderr
        assert f"PID {proc.pid}" in second.stderr
        assert second.stderr.count("\n") == 1
    finally:
        gate.set()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def test_a_dry_run_reads_a_store_a_live_run_holds(slow_ws: Workspace) -> None:
    """The dry run's scope is a temp table in a transaction of its own: it neither waits
    for nor blocks the run that holds the store."""
    ws = slow_ws
    gate = hold_last_segment(ws)
    proc = ws.start("--concurrency", "2")
    try:
        wait_for(lambda: ws.final_files(), what="first run downloading")
        dry = ws.run("--dry-run", "--json")
        assert dry.code == 0, dry.stderr
        assert dry.json["segments"] == len(ws.downloadable())
        assert dry.json["new"] == 0
        total = len(ws.downloadable())
        assert dry.json["already_done"] < total  # the held segment is not done
        assert dry.json["already_done"] + dry.json["to_download"] + dry.json["failed"] == total
    finally:
        gate.set()
    assert proc.wait(timeout=60) == 0
    ws.assert_all_identical()


def test_lock_is_released_by_sigkill(slow_ws: Workspace) -> None:
    ws = slow_ws
    proc = ws.start()
    wait_for(lambda: ws.final_files(), what="first run downloading")
    proc.kill()
    proc.wait(timeout=10)
    assert ws.run().code == 0


def test_second_ctrl_c_leaves_at_once_and_state_stays_consistent(slow_ws: Workspace) -> None:
    ws = slow_ws
    proc = ws.start("--concurrency", "4", "--no-progress")
    wait_for(lambda: len(ws.final_files()) >= 3 and ws.part_files(), what="work in flight")
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130 and "Traceback" not in err
    assert_no_half_files(ws)
    result = ws.run()
    assert result.code == 0, result.stderr
    ws.assert_all_identical()
