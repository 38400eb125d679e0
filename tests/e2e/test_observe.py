"""Metrics, hooks and pings seen from outside: the real CLI against the real origin, a
Prometheus parser reading what it wrote, hooks that record what they saw, a ping receiver
on 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Workspace, wait_for
from tfbulk.origin import Fault

STATUSES = ("pending", "processing", "success", "skipped", "failed")


def parsed(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as {(name, sorted labels): value}."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def segments(samples: dict) -> dict[str, float]:
    return {
        dict(labels)["status"]: value
        for (name, labels), value in samples.items()
        if name == "tfbulk_segments"
    }


def requests(samples: dict) -> dict[str, float]:
    return {
        dict(labels)["code"]: value
        for (name, labels), value in samples.items()
        if name == "tfbulk_requests_total"
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode()
    except OSError:
        return None


# -- metrics ------------------------------------------------------------------------------


def test_metrics_file_agrees_with_status_and_run_json(ws: Workspace) -> None:
    (_, gone), (_, flaky), *_ = ws.downloadable()
    ws.origin.add_fault(ws.url_path(gone), Fault(status=404, times=0))
    ws.origin.add_fault(ws.url_path(flaky), Fault(status=503, times=1))
    metrics = ws.root / "tfbulk.prom"
    result = ws.run("--no-progress", "--json", "--metrics-file", str(metrics))
    assert result.code == 1, result.stderr
    status = ws.tfbulk("status", "--dest", str(ws.dest), "--json").json
    samples = parsed(metrics.read_text())
    assert segments(samples) == {s: status[s] for s in STATUSES}
    assert samples[("tfbulk_downloaded_bytes_total", ())] == result.json["downloaded_bytes"] > 0
    codes = requests(samples)
    assert codes["503"] == 1
    assert codes["404"] >= 1
    assert codes["200"] == len(ws.downloadable()) - 1
    # every attempt after a segment's first is a retry
    assert samples[("tfbulk_retries_total", ())] == sum(codes.values()) - len(ws.downloadable())
    assert samples[("tfbulk_in_flight", ())] == 0
    assert samples[("tfbulk_exit_code", ())] == 1
    start = samples[("tfbulk_run_start_timestamp_seconds", ())]
    assert start <= samples[("tfbulk_last_success_timestamp_seconds", ())]
    assert not list(metrics.parent.glob("*.prom.*")), "the temporary file was renamed"


def test_metrics_served_mid_run_show_the_held_download(ws: Workspace) -> None:
    (_, held), *others = ws.downloadable()
    gate = threading.Event()
    ws.origin.add_fault(ws.url_path(held), Fault(gate=gate))
    port, metrics = free_port(), ws.root / "tfbulk.prom"
    proc = ws.start(
        "--no-progress", "--concurrency", "2",
        "--metrics-addr", f":{port}", "--metrics-file", str(metrics),
    )  # fmt: skip
    try:
        seen: dict = {}

        def all_others_done() -> bool:
            text = scrape(port)
            seen.update(parsed(text) if text else {})
            return segments(seen).get("success") == len(others)

        wait_for(all_others_done, timeout=60, what="the others counted while one is held")
        assert seen[("tfbulk_in_flight", ())] == 1
        assert segments(seen)["processing"] == 1
        assert requests(seen)["200"] == len(others) + 1  # the held one has its head
        assert seen[("tfbulk_downloaded_bytes_total", ())] > 0
        assert ("tfbulk_exit_code", ()) not in seen
        wait_for(
            lambda: segments(parsed(metrics.read_text())).get("success") == len(others),
            timeout=60,
            what="the file rewritten while the run goes on",
        )
        assert ("tfbulk_exit_code", ()) not in parsed(metrics.read_text())
    finally:
        gate.set()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert scrape(port) is None, "the endpoint lasts as long as the run"
    assert parsed(metrics.read_text())[("tfbulk_exit_code", ())] == 0


def test_bad_metrics_addr_is_exit_2(ws: Workspace) -> None:
    result = ws.run("--metrics-addr", "localhost:http")
    assert result.code == 2
    assert "--metrics-addr" in result.stderr
    assert "Traceback" not in result.stderr
    assert not ws.dest.exists()


def test_status_does_not_load_prometheus(ws: Workspace) -> None:
    code = (
        "import sys; from tfbulk.cli import main; sys.argv = ['tfbulk', 'status', '--dest', "
        f"{str(ws.dest)!r}]\ntry: main()\nexcept SystemExit: pass\n"
        "assert 'prometheus_client' not in sys.modules, 'loaded'"
    )
    assert ws.run("--no-progress").code == 0
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


# -- hooks --------------------------------------------------------------------------------

RECORD = (
    'printf "%s %s %s %s\\n" "$TFBULK_SEGMENT_ID" "$TFBULK_COURSE_ID" "$TFBULK_SIZE" "$TFBULK_PATH"'
)


def test_hooks_see_each_file_and_the_summary(ws: Workspace) -> None:
    log, summary = ws.root / "done.log", ws.root / "summary.json"
    on_finish = f'cp "$TFBULK_SUMMARY" {summary}; echo $TFBULK_EXIT_CODE > {log}.code; exit 7'
    result = ws.run_process(
        "--no-progress",
        "--json",
        "--on-complete", f"{RECORD} >> {log}",
        "--on-finish", on_finish,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    seen = {}
    for line in log.read_text().splitlines():
        segment_id, course_id, size, path = line.split(" ", 3)
        seen[int(segment_id)] = (int(course_id), int(size), Path(path))
    assert sorted(seen) == sorted(s for _, s in ws.downloadable())
    for course_id, segment_id in ws.downloadable():
        path = ws.file_of(course_id, segment_id).resolve()
        assert seen[segment_id] == (course_id, path.stat().st_size, path)
    assert (ws.root / "done.log.code").read_text().strip() == "0"
    written = json.loads(summary.read_text())
    printed = result.json
    for data in (written, printed):
        data.pop("peak_rss_bytes")
    assert written == printed
    assert "--on-finish" in result.stderr and "exited with 7" in result.stderr


def all_success(ws: Workspace) -> bool:
    try:
        return set(ws.states().values()) == {"success"}
    except sqlite3.Error:  # not created yet
        return False


def hooks_started(record: Path) -> int:
    """Hooks that have written their segment id to `record` (none while it is missing)."""
    return len(record.read_text().split()) if record.exists() else 0


def test_a_held_hook_never_holds_the_downloads(ws: Workspace) -> None:
    """One hook at a time, the first one blocked: every download still finishes; the
    queued hooks run once it is released, and the run waits for them."""
    started, release = ws.root / "started", ws.root / "release"
    hook = f"echo $TFBULK_SEGMENT_ID >> {started}; while [ ! -e {release} ]; do sleep 0.1; done"
    proc = ws.start("--no-progress", "--on-complete", hook, "--hook-concurrency", "1")
    try:
        # Two events, in either order on a busy machine: the first hook has started (and
        # is held), and every download has finished.
        wait_for(lambda: hooks_started(started) > 0, timeout=60, what="the first hook started")
        wait_for(
            lambda: all_success(ws),
            timeout=60,
            what="every segment downloaded while the hook is held",
        )
        assert hooks_started(started) == 1, "one hook at a time"
        assert proc.poll() is None, "the run waits for its hooks"
    finally:
        release.touch()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert hooks_started(started) == len(ws.downloadable())


def test_a_failing_or_hanging_hook_is_reported_and_changes_nothing(ws: Workspace) -> None:
    (_, first), (_, second), *_ = ws.downloadable()
    hook = (
        f"[ $TFBULK_SEGMENT_ID = {first} ] && exit 3; "
        f"[ $TFBULK_SEGMENT_ID = {second} ] && sleep 60; true"
    )
    result = ws.run_process("--no-progress", "--on-complete", hook, "--hook-timeout", "1s")
    assert result.code == 0, result.stderr
    assert f"--on-complete for segment {first} exited with 3" in result.stderr
    assert f"--on-complete for segment {second} was killed after --hook-timeout 1s" in result.stderr
    ws.assert_all_identical()


# -- pings --------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[str]]]:
    """A health-check service on 127.0.0.1 that records the paths it is sent."""
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/ping/f00dfeed", paths
    finally:
        server.shutdown()
        server.server_close()


def test_pings_start_and_exit_code(ws: Workspace, receiver: tuple[str, list[str]]) -> None:
    url, paths = receiver
    assert ws.run("--no-progress", "--ping-url", url + "/").code == 0
    assert ws.run("--no-progress", "--ping-url", url, "--course", "999").code == 2
    assert paths == ["/ping/f00dfeed/start", "/ping/f00dfeed/0", "/ping/f00dfeed/2"]


def test_a_failed_ping_is_a_warning_without_the_url(ws: Workspace) -> None:
    url = f"http://127.0.0.1:{free_port()}/ping/f00dfeed"
    result = ws.run_process("--no-progress", "--ping-url", url)
    assert result.code == 0, result.stderr
    assert "--ping-url http://127.0.0.1/…/start failed" in result.stderr
    assert "f00dfeed" not in result.stderr


# -- the config file drives a real run ----------------------------------------------------


def test_a_run_configured_by_file(ws: Workspace, receiver: tuple[str, list[str]]) -> None:
    """Everything but the snapshot from TFBULK_CONFIG; a flag still wins over the file."""
    url, paths = receiver
    args = dict(zip(ws.run_args()[1::2], ws.run_args()[2::2], strict=True))
    config = ws.root / "tfbulk.toml"
    config.write_text(
        f'dest = "{ws.root / "elsewhere"}"\n'
        "[run]\n"
        f'url_template = "{args["--url-template"]}"\n'
        f'key_pair_id = "{args["--key-pair-id"]}"\n'
        f'private_key = "{args["--private-key"]}"\n'
        f'ping_url = "{url}"\n'
        "progress = false\n"
        "concurrency = 2\n"
    )
    result = ws.tfbulk(
        "run", "--snapshot", str(ws.snapshot), "--dest", str(ws.dest),
        env={"TFBULK_CONFIG": str(config)},
    )  # fmt: skip
    assert result.code == 0, result.stderr
    ws.assert_all_identical()
    assert not (ws.root / "elsewhere").exists()
    assert paths == ["/ping/f00dfeed/start", "/ping/f00dfeed/0"]


# -- several workers on PostgreSQL --------------------------------------------------------


@pytest.mark.slow
def test_postgres_workers_each_report_under_their_worker_label(ws: Workspace, pg_url: str) -> None:
    files = {name: ws.root / f"{name}.prom" for name in ("a", "b")}
    procs = {
        name: ws.start("--state", pg_url, "--no-progress", "--metrics-file", str(path))
        for name, path in files.items()
    }
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (name, err)
    samples = {name: parsed(path.read_text()) for name, path in files.items()}
    workers = {
        name: {dict(labels)["worker"] for (_, labels) in found} for name, found in samples.items()
    }
    assert all(len(ids) == 1 for ids in workers.values()), workers
    assert workers["a"] != workers["b"]
    got = {
        name: sum(v for (n, lab), v in found.items() if n == "tfbulk_requests_total")
        for name, found in samples.items()
    }
    assert sum(got.values()) == len(ws.downloadable())
    moved = sum(
        v for found in samples.values() for (n, _), v in found.items()
        if n == "tfbulk_downloaded_bytes_total"
    )  # fmt: skip
    assert moved == sum(p.stat().st_size for p in ws.final_files())
