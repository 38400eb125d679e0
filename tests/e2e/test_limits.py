"""Operator limits end to end, measured where they matter: at the origin."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import Workspace
from tfbulk.origin import Fault, SyntheticContent
from tfbulk.origin.sample import guitar_catalogue

MIB = 1 << 20


@contextmanager
def served_over_time(ws: Workspace) -> Iterator[list[tuple[float, int]]]:
    """(time, bytes the origin has sent so far), sampled every 20 ms while the block runs."""
    samples: list[tuple[float, int]] = [(time.monotonic(), 0)]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            samples.append((time.monotonic(), ws.origin.bytes_served()))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        done.set()
        thread.join()
        samples.append((time.monotonic(), ws.origin.bytes_served()))


def busiest(samples: list[tuple[float, int]], window: float) -> float:
    """The most bytes sent in any `window` seconds, per second."""
    best = 0.0
    for i, (start, before) in enumerate(samples):
        for end, after in samples[i:]:
            if end - start >= window:
                best = max(best, (after - before) / (end - start))
                break
    return best


def big_files(ws: Workspace, courses: int) -> int:
    """Bodies of 256-512 KiB; the catalogue's total size."""
    ws.origin.content = SyntheticContent(min_size=256 * 1024, max_size=512 * 1024)
    ws.write_catalogue(guitar_catalogue(courses, 10))
    return sum(len(ws.expected(s)) for _, s in ws.downloadable())


SOCKET_SLACK = 768 * 1024  # what one connection's socket buffers hold ahead of the reader


def test_bwlimit_keeps_every_two_seconds_under_the_limit(ws: Workspace) -> None:
    total = big_files(ws, 4)
    limit, connections = 2 * MIB, 2
    assert total > 4 * limit  # unlimited, it would all arrive inside one window
    with served_over_time(ws) as samples:
        result = ws.run("--bwlimit", "2M", "--json", "--concurrency", str(connections))
    assert result.code == 0, result.stderr
    ws.assert_all_identical()
    window = 2.0
    bound = 1.5 * limit + connections * SOCKET_SLACK / window
    assert busiest(samples, window) <= bound


def test_max_rps_bounds_requests_started_retries_included(ws: Workspace) -> None:
    first = ws.downloadable()[:4]
    for _, segment_id in first:  # each fails once: its retry counts as a request too
        ws.origin.add_fault(ws.url_path(segment_id), Fault(status=503))
    result = ws.run("--json", env={"TFBULK_MAX_RPS": "10"})
    assert result.code == 0, result.stderr
    ws.assert_all_identical()
    starts = sorted(r.started for r in ws.origin.log)
    assert len(starts) == len(ws.downloadable()) + len(first)
    busiest = max(sum(1 for t in starts if s <= t < s + 1.0) for s in starts)
    assert busiest <= 10 + 2  # the origin sees the starts with the network's jitter


def test_max_transfer_stops_gracefully_and_the_next_run_continues(ws: Workspace) -> None:
    quota = 100 * 1024
    result = ws.run("--max-transfer", "100K", "--concurrency", "2", "--json")
    assert result.code == 75, result.stderr
    summary = result.json
    assert summary["stopped"] == "max-transfer"
    assert summary["limits"]["max_transfer"] == quota
    assert "limits: max-transfer 100 KiB · min-free-space 256 MiB" in result.stderr
    assert summary["downloaded_bytes"] >= quota
    assert summary["failed"] == 0 and summary["pending"] > 0 and summary["success"] > 0
    assert not any(r.status not in (200, 206) for r in ws.origin.log)  # none cut short
    again = ws.run("--json")
    assert again.code == 0, again.stderr
    ws.assert_all_identical()


def test_min_free_space_beyond_the_disk_stops_with_exit_2_and_loses_nothing(
    ws: Workspace,
) -> None:
    ws.dest.mkdir()
    info = os.statvfs(ws.dest)
    reserve = info.f_bavail * info.f_frsize + (1 << 30)
    result = ws.run("--min-free-space", str(reserve), "--json")
    assert result.code == 2, result.stderr
    assert result.json["stopped"] == "disk"
    assert "--min-free-space" in result.json["error"] and "more" in result.json["error"]
    assert "--min-free-space" in result.stderr
    assert result.json["failed"] == 0 and result.json["success"] == 0
    assert ws.gets() == 0
    again = ws.run("--json")
    assert again.code == 0, again.stderr
    ws.assert_all_identical()


def test_doctor_does_the_runs_free_space_arithmetic(ws: Workspace) -> None:
    assert ws.run("--course", "1").code == 0  # sizes known from the state DB
    info = os.statvfs(ws.dest)
    reserve = info.f_bavail * info.f_frsize + (1 << 30)
    args = ["doctor", *ws.run_args("--min-free-space", str(reserve), "--json")[1:]]
    for flag in ("--backoff-base", "--backoff-max"):
        del args[args.index(flag) : args.index(flag) + 2]
    result = ws.cli(*args)
    check = next(c for c in result.json["checks"] if c["name"] == "free space")
    assert result.code == 1 and check["status"] == "fail"
    assert "still needed" in check["detail"] and "--min-free-space keeps" in check["detail"]
    assert "more" in check["advice"] and "--min-free-space" in check["advice"]


def test_min_free_space_keeps_the_reserve_on_a_small_disk(ws: Workspace, small_disk: Path) -> None:
    args = ws.run_args("--json", "--min-free-space", "96K", "--concurrency", "2")
    args[args.index("--dest") + 1] = str(small_disk)
    result = ws.cli(*args, "--state", str(ws.root / "state.db"))
    assert result.code == 2, result.stderr
    summary = result.json
    assert summary["stopped"] == "disk" and "--min-free-space keeps 96 KiB" in summary["error"]
    assert "No space left" not in result.stderr
    assert summary["success"] > 0 and summary["failed"] == 0 and summary["processing"] == 0
    info = os.statvfs(small_disk)
    assert info.f_bavail * info.f_frsize >= 64 * 1024  # the reserve, give or take metadata
    for path in small_disk.rglob("*.mp4"):
        assert path.read_bytes() == ws.expected(int(path.stem))


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--bwlimit", "fast"),
        ("--bwlimit", "08:00,1M 25:00,off"),
        ("--max-rps", "0"),
        ("--max-transfer", "lots"),
        ("--min-free-space", "-1G"),
    ],
)
def test_bad_limits_are_one_line_exit_2(ws: Workspace, flag: str, value: str) -> None:
    result = ws.run(flag, value)
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and "Traceback" not in result.stderr
    assert not ws.state.exists()


def test_limits_come_from_the_environment_too(ws: Workspace) -> None:
    env = {"TFBULK_BWLIMIT": "00:00,100M 12:00,100M", "TFBULK_MIN_FREE_SPACE": "1M"}
    result = ws.run("--json", env=env)
    assert result.code == 0, result.stderr
    limits = result.json["limits"]
    assert limits["bwlimit"] == "00:00 100 MiB/s, 12:00 100 MiB/s"
    assert limits["min_free_space"] == 1 << 20
