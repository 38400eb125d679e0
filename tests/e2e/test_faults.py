"""Every row of the failure policy, against the fault-injecting origin.

| what happens                        | what tfbulk does                                   |
| connect error, timeout, reset, short | retry with backoff, resume the .part with Range   |
| 500 502 503 504 429                  | retry with backoff, honour Retry-After            |
| 403                                  | re-sign, retry at once, once; then backoff + hint |
| 404 410                              | failed at once                                     |
| 400 and other 4xx                    | failed after one retry                             |
| 200 that fails verification          | retry once from zero, then failed                  |
| disk full                            | stop, park in-flight, keep finished, exit 2        |
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Workspace
from tfbulk.origin import Fault


def first(ws: Workspace) -> tuple[int, str]:
    """The first downloadable segment and its URL path."""
    segment = ws.downloadable()[0][1]
    return segment, ws.url_path(segment)


def failed_json(ws: Workspace) -> dict[int, dict]:
    data = ws.cli("failed", "--dest", str(ws.dest), "--json").json
    return {item["segment_id"]: item for item in data}


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_server_errors_are_retried(ws: Workspace, status: int) -> None:
    _segment, path = first(ws)
    ws.origin.add_fault(path, Fault(status=status, times=2))
    result = ws.run("--json")
    assert result.code == 0, result.stderr
    assert [r.status for r in ws.origin.requests_for(path)] == [status, status, 200]
    ws.assert_all_identical()


@pytest.mark.parametrize("header", ["seconds", "http-date"])
def test_retry_after_is_honoured(ws: Workspace, header: str) -> None:
    _segment, path = first(ws)
    if header == "seconds":
        fault = Fault(status=503, times=1, retry_after="2")
    else:
        fault = Fault(status=503, times=1, retry_date_in=3)
    ws.origin.add_fault(path, fault)
    assert ws.run("--backoff-max", "30s").code == 0
    refused, served = ws.origin.requests_for(path)
    gap = served.started - refused.ended
    assert gap >= 1.5, f"retried after {gap:.2f}s despite a Retry-After {header}"


def test_retry_after_is_capped_by_backoff_max(ws: Workspace) -> None:
    _segment, path = first(ws)
    ws.origin.add_fault(path, Fault(status=429, times=1, retry_after="3600"))
    result = ws.run("--backoff-max", "0.5s", timeout=60)
    assert result.code == 0
    refused, served = ws.origin.requests_for(path)
    assert served.started - refused.ended < 5


def test_backoff_does_not_hold_a_slot(ws: Workspace) -> None:
    """One concurrency slot: while the failing segment waits, the others keep downloading."""
    _segment, path = first(ws)
    ws.origin.add_fault(path, Fault(status=503, times=1, retry_after="2"))
    assert ws.run("--concurrency", "1", "--backoff-max", "30s").code == 0
    refused, served = ws.origin.requests_for(path)
    meanwhile = [
        r for r in ws.origin.log if r.path != path and refused.ended <= r.started < served.started
    ]
    others = len(ws.downloadable()) - 1
    assert len(meanwhile) == others, "the pool sat idle while one segment waited to retry"


def test_forbidden_is_resigned_and_retried_at_once(ws: Workspace) -> None:
    _segment, path = first(ws)
    ws.origin.add_fault(path, Fault(status=403, times=1))
    assert ws.run("--backoff-base", "5s").code == 0
    denied, served = ws.origin.requests_for(path)
    assert served.started - denied.ended < 1.0, "a first 403 must be retried at once"


def test_repeated_forbidden_backs_off_and_reports_a_hint(ws: Workspace) -> None:
    segment, path = first(ws)
    ws.origin.add_fault(path, Fault(status=403, times=0))
    result = ws.run("--retries", "3")
    assert result.code == 1
    assert len(ws.origin.requests_for(path)) == 3
    error = failed_json(ws)[segment]["error"]
    assert "HTTP 403" in error and "check --key-pair-id, the private key" in error


def test_wrong_key_pair_id_fails_with_the_hint(ws: Workspace) -> None:
    args = ws.run_args("--retries", "2", "--course", "1")
    args[args.index("--key-pair-id") + 1] = "KWRONG"
    result = ws.cli(*args)
    assert result.code == 1
    errors = {item["error"] for item in failed_json(ws).values()}
    assert errors == {"HTTP 403 Forbidden: unknown Key-Pair-Id (check --key-pair-id, "
                      "the private key and this machine's clock)"}  # fmt: skip


@pytest.mark.parametrize("status", [404, 410])
def test_gone_is_permanent_at_once(ws: Workspace, status: int) -> None:
    segment, path = first(ws)
    ws.origin.add_fault(path, Fault(status=status, times=0))
    assert ws.run().code == 1
    assert len(ws.origin.requests_for(path)) == 1
    item = failed_json(ws)[segment]
    assert item["attempts"] == 1 and item["error"].startswith(f"HTTP {status}")


@pytest.mark.parametrize("status", [400, 401, 418])
def test_other_client_errors_fail_after_one_retry(ws: Workspace, status: int) -> None:
    segment, path = first(ws)
    ws.origin.add_fault(path, Fault(status=status, times=0))
    assert ws.run().code == 1
    assert len(ws.origin.requests_for(path)) == 2
    assert failed_json(ws)[segment]["attempts"] == 2


def test_html_page_with_200_is_retried_once_from_zero_then_failed(ws: Workspace) -> None:
    segment, path = first(ws)
    ws.origin.add_fault(path, Fault(html=True, times=0))
    assert ws.run().code == 1
    requests = ws.origin.requests_for(path)
    assert len(requests) == 2 and all(r.range is None for r in requests)
    error = failed_json(ws)[segment]["error"]
    assert "verification failed" in error and "HTML page" in error
    course_id = ws.downloadable()[0][0]
    assert not ws.file_of(course_id, segment).exists()
    assert ws.part_files() == []


def test_html_page_once_then_the_real_file(ws: Workspace) -> None:
    _segment, path = first(ws)
    ws.origin.add_fault(path, Fault(html=True, times=1))
    assert ws.run().code == 0
    ws.assert_all_identical()


def test_md5_mismatch_is_detected(ws: Workspace) -> None:
    segment, path = first(ws)
    ws.origin.add_fault(path, Fault(wrong_md5=True, times=0))
    assert ws.run().code == 1
    assert "does not match the ETag" in failed_json(ws)[segment]["error"]
    assert not ws.file_of(ws.downloadable()[0][0], segment).exists()


def test_dropped_connection_resumes_with_range_and_serves_only_the_rest(ws: Workspace) -> None:
    _segment, path = first(ws)
    ws.origin.content.set_size(path, 400_000)
    ws.origin.add_fault(path, Fault(drop_after=150_000, times=1))
    assert ws.run().code == 0
    dropped, resumed = ws.origin.requests_for(path)
    assert dropped.sent == 150_000 and dropped.range is None
    assert resumed.range == "bytes=150000-" and resumed.status == 206
    assert resumed.if_range == ws.origin.content.etag(path)
    assert dropped.sent + resumed.sent == 400_000
    ws.assert_all_identical()


def test_changed_object_is_never_stitched_to_an_old_half(ws: Workspace) -> None:
    segment, path = first(ws)
    ws.origin.content.set_size(path, 300_000)
    old = ws.expected(segment)
    ws.origin.add_fault(path, Fault(drop_after=100_000, times=1, change_after=True))
    assert ws.run().code == 0
    _, second = ws.origin.requests_for(path)
    assert second.range == "bytes=100000-" and second.status == 200
    body = ws.file_of(ws.downloadable()[0][0], segment).read_bytes()
    assert body == ws.expected(segment) and body != old


def test_read_timeout_fails_the_attempt_and_resumes(ws: Workspace) -> None:
    _segment, path = first(ws)
    ws.origin.content.set_size(path, 200_000)
    ws.origin.add_fault(path, Fault(stall=3.0, times=1))
    result = ws.run("--read-timeout", "0.5s", "--json")
    assert result.code == 0, result.stderr
    _stalled, resumed = ws.origin.requests_for(path)
    assert resumed.status == 206 and resumed.range and resumed.range != "bytes=0-"
    ws.assert_all_identical()


def test_connect_errors_are_retried_then_reported(ws: Workspace) -> None:
    args = ws.run_args("--retries", "2", "--course", "1", "--json")
    with socket.socket() as sock:  # bound, never listening: refused, and no one else's port
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
        index = args.index("--url-template") + 1
        args[index] = f"http://127.0.0.1:{closed_port}/truefire/{{segment_id}}.mp4"
        result = ws.cli(*args)
    assert result.code == 1
    items = failed_json(ws)
    assert items and all(item["attempts"] == 2 for item in items.values())
    assert all("connection error" in item["error"] for item in items.values())


# -- disk full -------------------------------------------------------------------------


@pytest.mark.parametrize("state_on_same_disk", [False, True])
def test_disk_full_stops_cleanly_and_resumes(
    ws: Workspace, small_disk: Path, state_on_same_disk: bool
) -> None:
    args = ws.run_args("--json", "--min-free-space", "0")  # the real ENOSPC, no reserve
    args[args.index("--dest") + 1] = str(small_disk)
    state = small_disk / ".tfbulk" / "state.db" if state_on_same_disk else ws.root / "state.db"
    result = ws.cli(*args, "--state", str(state))
    assert result.code == 2, result.stderr
    assert "No space left on device" in result.stderr or "full" in result.stderr
    assert str(small_disk) in result.stderr and "bytes free" in result.stderr
    assert "Traceback" not in result.stderr
    finished = sorted(p for p in small_disk.rglob("*.mp4"))
    assert finished, "files finished before the disk filled must stay"
    for path in finished:
        assert path.read_bytes() == ws.expected(int(path.stem))
    summary = json.loads(result.stdout)
    assert summary["stopped"] == "disk"
    assert summary["processing"] == 0, "in-flight segments were parked, even uncommitted"
    assert summary["success"] == len(finished)
    assert summary["pending"] == summary["total"] - len(finished)

    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    again = ws.cli(*args, "--state", str(state))
    assert again.code == 0, again.stderr
    for course_id, segment_id in ws.downloadable():
        target = small_disk / str(course_id) / f"{segment_id}.mp4"
        assert target.read_bytes() == ws.expected(segment_id)
