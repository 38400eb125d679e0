"""`tfbulk demo` and `tfbulk origin`: the product on one machine, nothing left running."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from tests.conftest import KEY_PAIR_ID, Workspace, child_env
from tfbulk.origin import SyntheticContent

SMALL = [
    "--courses",
    "2",
    "--segments",
    "5",
    "--speed",
    "0",
    "--min-size",
    "2k",
    "--max-size",
    "24k",
]


def port_is_closed(url: str) -> bool:
    parsed = urlparse(url)
    with socket.socket() as sock:
        return sock.connect_ex((parsed.hostname, parsed.port)) != 0


def stop_origin(proc: subprocess.Popen[str], signum: signal.Signals) -> str:
    """Signal the origin and return its output; kill it if it ignores the signal."""
    proc.send_signal(signum)
    try:
        return proc.communicate(timeout=10)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise


def test_demo_downloads_everything_verified_and_stops_its_origin(ws: Workspace) -> None:
    folder = ws.root / "demo"
    result = ws.tfbulk("demo", "--dir", str(folder), *SMALL, "--json")
    assert result.code == 0, result.stderr
    data = result.json
    assert data["success"] == data["total"] > 0 and data["failed"] == 0
    content = SyntheticContent(2 * 1024, 24 * 1024)
    videos = sorted((folder / "videos").rglob("*.mp4"))
    assert len(videos) == data["total"]
    for video in videos:
        assert video.read_bytes() == content.body(f"/truefire/{video.name}")
    assert port_is_closed(data["demo"]["origin"])


def test_demo_with_faults_exits_1_listing_the_404(ws: Workspace) -> None:
    folder = ws.root / "demo"
    result = ws.tfbulk("demo", "--dir", str(folder), *SMALL, "--faults", "--json")
    assert result.code == 1, result.stderr
    gone = result.json["demo"]["faults"]["404 (permanent)"]
    failed = ws.cli("failed", "--dest", str(folder / "videos"), "--json").json
    assert [item["segment_id"] for item in failed] == [gone]
    assert result.json["success"] == result.json["total"] - 1


def test_demo_prints_how_to_come_back_and_reruns_idempotently(ws: Workspace) -> None:
    folder = ws.root / "demo"
    first = ws.tfbulk("demo", "--dir", str(folder), *SMALL, "--no-progress")
    assert first.code == 0
    assert f"tfbulk status --dest {folder / 'videos'}" in first.stdout
    assert "tfbulk run --snapshot" in first.stdout
    again = ws.tfbulk("demo", "--dir", str(folder), *SMALL, "--json")
    assert again.code == 0 and again.json["downloaded_bytes"] == 0


def test_origin_command_checks_signatures_and_stops_on_ctrl_c(ws: Workspace) -> None:
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "tfbulk", "origin", "--synthetic", "--port", "0",
            "--public-key", str(ws.keys.public_file), "--key-pair-id", KEY_PAIR_ID,
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
    )  # fmt: skip
    try:
        banner = proc.stdout.readline() if proc.stdout else ""
        base = banner.split()[1]
        url = f"{base}/truefire/1001.mp4"
        signed = ws.tfbulk(
            "sign", url, "--key-pair-id", KEY_PAIR_ID, "--private-key", str(ws.keys.private)
        ).stdout.strip()
        assert httpx.get(signed).status_code == 200
        assert httpx.get(url).status_code == 403
    finally:
        out = stop_origin(proc, signal.SIGINT)
    assert proc.returncode == 0 and "origin stopped" in out


def test_origin_serves_a_folder_with_ranges(ws: Workspace, tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    (root / "truefire").mkdir(parents=True)
    (root / "truefire" / "7.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(5000))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfbulk", "origin", "--root", str(root), "--port", "0"],
        stdout=subprocess.PIPE, text=True, env=child_env(),
    )  # fmt: skip
    try:
        base = (proc.stdout.readline() if proc.stdout else "").split()[1]
        whole = httpx.get(f"{base}/truefire/7.mp4")
        part = httpx.get(f"{base}/truefire/7.mp4", headers={"Range": "bytes=4-11"})
        assert whole.status_code == 200 and len(whole.content) == 5012
        assert part.status_code == 206 and part.content == b"ftypisom"
        assert httpx.get(f"{base}/../etc/passwd").status_code == 404
    finally:
        stop_origin(proc, signal.SIGINT)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["int", "term"])
def test_origin_started_in_the_background_stops_on_int_and_term(
    tmp_path: Path, stop: signal.Signals
) -> None:
    """`tfbulk origin &` from a script inherits SIGINT ignored; `kill -INT` must still stop it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfbulk", "origin", "--root", str(tmp_path), "--port", "0"],
        stdout=subprocess.PIPE, text=True, env=child_env(), preexec_fn=_ignore_sigint,
    )  # fmt: skip
    try:
        base = (proc.stdout.readline() if proc.stdout else "").split()[1]
        assert httpx.get(f"{base}/truefire/none.mp4").status_code == 404
    finally:
        out = stop_origin(proc, stop)
    assert proc.returncode == 0 and "origin stopped" in out


def test_origin_command_refuses_bad_flags(ws: Workspace) -> None:
    both = ws.tfbulk("origin", "--synthetic", "--root", str(ws.root))
    assert both.code == 2 and "exactly one of" in both.stderr
    no_id = ws.tfbulk("origin", "--synthetic", "--public-key", str(ws.keys.public_file))
    assert no_id.code == 2 and "--key-pair-id" in no_id.stderr
