"""Several `tfbulk run` workers share one PostgreSQL queue: a real server, the real CLI.

Every claim about the workers is checked where it shows: in the origin's request log
(fetched once, Range resumes, requests in flight) and in the shared database.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import KEY_PAIR_ID, Keys, Result, Workspace, child_env, wait_for
from tests.e2e.test_doctor import doctor
from tests.pgcluster import Cluster, psycopg
from tfbulk.origin import Fault, Origin, RequestRecord, SyntheticContent
from tfbulk.origin.sample import guitar_catalogue

pytestmark = pytest.mark.slow

BODY = (200, 206)


@dataclass
class Shared:
    """One queue (a database), one destination, one origin: what several workers share."""

    ws: Workspace
    url: str
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def password(self) -> str:
        return urlsplit(self.url).password or ""

    def args(self, *extra: str) -> list[str]:
        return ["--state", self.url, "--no-progress", *extra]

    def start(self, name: str, *extra: str) -> subprocess.Popen[str]:
        log = self.ws.root / f"{name}.jsonl"
        proc = self.ws.start(*self.args("--log-file", str(log), *extra))
        self.procs.append(proc)
        return proc

    def reap(self) -> None:
        """A failed test must not leave workers running."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()

    def run(self, *extra: str) -> Result:
        return self.ws.run(*self.args(*extra))

    def query(self, sql: str, *params: object) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("SET search_path TO tfbulk")
            return conn.execute(sql, params).fetchall()

    def statuses(self) -> Counter[str]:
        return Counter(dict(self.query("SELECT status, count(*) FROM segments GROUP BY 1")))

    def finished_by(self, name: str) -> set[int]:
        """Segments this worker downloaded, from its --log-file."""
        path = self.ws.root / f"{name}.jsonl"
        if not path.exists():
            return set()
        lines = path.read_text().split("\n")[:-1]  # complete lines only: it may be writing
        events = [json.loads(line) for line in lines]
        return {e["segment_id"] for e in events if e["event"] == "segment_success"}


@pytest.fixture
def shared(ws: Workspace, pg_url: str) -> Iterator[Shared]:
    queue = Shared(ws, pg_url)
    yield queue
    queue.reap()


def finish(procs: dict[str, subprocess.Popen[str]], timeout: float = 120) -> dict[str, Result]:
    """Wait for every worker; a hung one is killed and fails the test."""
    results = {}
    deadline = time.monotonic() + timeout
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for other in procs.values():
                other.kill()
            raise AssertionError(f"worker {name} did not finish") from None
        results[name] = Result(proc.returncode, out, err)
    return results


def size_of(path: Path) -> int:
    """0 for a file that went away meanwhile (a `.part` renamed as it finished)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def segment_of(path: str) -> int:
    """`/truefire/1234.mp4` -> 1234."""
    return int(path.rsplit("/", 1)[1].split(".")[0])


def bodies(log: list[RequestRecord]) -> Counter[str]:
    return Counter(r.path for r in log if r.status in BODY)


def assert_each_fetched_once(ws: Workspace) -> None:
    fetched = bodies(ws.origin.log)
    expected = {ws.url_path(s) for _, s in ws.downloadable()}
    assert set(fetched) == expected
    twice = {path: n for path, n in fetched.items() if n > 1}
    assert not twice, f"fetched more than once: {twice}"
    assert all(r.status in BODY for r in ws.origin.log), "unexpected responses"


def throughput(log: list[RequestRecord]) -> float:
    """Bytes per second at the origin, first request to last byte."""
    start = min(r.started for r in log)
    end = max(r.ended for r in log)
    return sum(r.sent for r in log) / (end - start)


# -- three workers, one queue ----------------------------------------------------------


def test_three_workers_fetch_every_segment_exactly_once(shared: Shared) -> None:
    ws = shared.ws
    ws.write_catalogue(guitar_catalogue(10, 70))  # every 7th has no video: 600 to fetch
    assert len(ws.downloadable()) == 600
    ws.origin.speed = 250_000
    procs = {name: shared.start(name, "--concurrency", "4") for name in ("w1", "w2", "w3")}
    results = finish(procs)
    for name, result in results.items():
        assert result.code == 0, f"{name}: {result.stderr}"
        assert shared.password not in result.stderr + result.stdout

    ws.assert_all_identical()
    assert ws.part_files() == []
    assert_each_fetched_once(ws)
    shares = {name: shared.finished_by(name) for name in procs}
    assert all(shares.values()), f"a worker did nothing: { {n: len(s) for n, s in shares.items()} }"
    assert sum(len(s) for s in shares.values()) == 600
    assert shared.statuses() == Counter(success=600)
    assert shared.query("SELECT count(*) FROM plans") == [(1,)], "planned more than once"
    assert shared.query("SELECT count(*) FROM workers") == [(0,)], "workers left the list"


def test_three_workers_outpace_one_under_a_per_connection_throttle(
    pg_cluster: Cluster, keys: Keys, tmp_path: Path
) -> None:
    """The scaling figure: the same work, 1 worker then 3, 4 connections each."""
    rates = {}
    for workers in (1, 3):
        content = SyntheticContent(min_size=16 * 1024, max_size=48 * 1024)
        with Origin(content=content, public_keys={KEY_PAIR_ID: keys.public}) as origin:
            origin.speed = 100_000
            ws = Workspace(tmp_path / f"x{workers}", origin, keys)
            ws.root.mkdir()
            ws.write_catalogue(guitar_catalogue(4, 42))
            database = pg_cluster.create_database()
            shared = Shared(ws, pg_cluster.url(database))
            try:
                names = [f"w{n}" for n in range(workers)]
                results = finish({n: shared.start(n, "--concurrency", "4") for n in names})
                assert all(r.code == 0 for r in results.values())
                assert_each_fetched_once(ws)
                rates[workers] = throughput(origin.log)
            finally:
                shared.reap()
                pg_cluster.drop_database(database)
    factor = rates[3] / rates[1]
    print(
        f"\nthroughput: 1 worker {rates[1] / 1e3:.0f} kB/s, "
        f"3 workers {rates[3] / 1e3:.0f} kB/s, scaling x{factor:.2f}"
    )
    assert factor > 2.0


# -- a worker killed mid-run -------------------------------------------------------------


def test_kill_9_one_worker_the_others_take_over_by_range(shared: Shared) -> None:
    ws = shared.ws
    ws.write_catalogue(guitar_catalogue(4, 30))
    ws.origin.content = SyntheticContent(min_size=64 * 1024, max_size=128 * 1024)
    ws.origin.speed = 200_000
    lease = ("--lease", "2s", "--concurrency", "4")
    procs = {name: shared.start(name, *lease) for name in ("victim", "w2", "w3")}
    victim = procs["victim"]

    def victim_has_partial_work() -> bool:
        if not shared.finished_by("victim"):
            return False
        held = shared.query(
            "SELECT id FROM segments WHERE worker LIKE %s AND status = 'processing' "
            "AND etag IS NOT NULL",
            f"%:{victim.pid}:%",
        )
        return len(shared.finished_by("victim")) >= 2 and bool({i for (i,) in held} & started())

    def started() -> set[int]:
        """Segments with a `.part` that holds bytes (an empty one resumes from 0)."""
        return {int(p.name.split(".")[0]) for p in ws.part_files() if size_of(p)}

    wait_for(victim_has_partial_work, timeout=60, what="the victim mid-download")
    victim.kill()
    victim.wait(timeout=10)
    in_flight: dict[int, bool] = dict(
        shared.query(
            "SELECT id, etag IS NOT NULL FROM segments "
            "WHERE worker LIKE %s AND status = 'processing'",
            f"%:{victim.pid}:%",
        )
    )
    partial = started() & set(in_flight)
    log_at_kill = len(ws.origin.log)
    assert in_flight and partial

    results = finish({n: p for n, p in procs.items() if n != "victim"})
    assert all(r.code == 0 for r in results.values()), [r.stderr for r in results.values()]
    ws.assert_all_identical()
    assert ws.part_files() == []
    assert shared.statuses()["success"] + shared.statuses()["skipped"] == len(ws.downloadable())

    fetched = bodies(ws.origin.log)
    again = {p for p, n in fetched.items() if n > 1}
    again_ids = {segment_of(p) for p in again}
    assert max(fetched.values()) <= 2
    assert again_ids <= set(in_flight), "a segment the victim did not hold was fetched twice"
    later = [r for r in ws.origin.log[log_at_kill:] if segment_of(r.path) in in_flight]
    resumed = [r for r in later if r.range]
    assert resumed, "no segment was resumed by Range"
    assert all(r.status in (206, 416) for r in resumed)
    for r in later:
        segment = segment_of(r.path)
        if segment in partial and in_flight[segment]:
            assert r.range, f"{r.path}: a .part with known validators was fetched from 0"
    to_victim = sum(r.sent for r in ws.origin.log[:log_at_kill] if r.path in again)
    resent = sum(r.sent for r in later if r.path in again)
    by_range = {r.path for r in resumed}
    sizes = sum(len(ws.expected(segment_of(p))) for p in again)
    total = sum(len(ws.expected(s)) for _, s in ws.downloadable())
    print(
        f"\nkill -9: the victim held {len(in_flight)} segments ({len(partial)} with a .part); "
        f"fetched twice: {len(again)} of {len(ws.downloadable())}, "
        f"{len(by_range & again)} of them resumed by Range; "
        f"those files: {sizes:,} bytes, sent to the victim {to_victim:,}, re-served "
        f"{resent:,}; origin total {ws.origin.bytes_served():,} for {total:,} bytes of files"
    )


def test_a_live_worker_keeps_its_part_when_its_lease_is_taken(shared: Shared) -> None:
    """Leases expire under a live worker (as if it lost the database): its `.part` lock holds."""
    ws = shared.ws
    ws.write_catalogue(guitar_catalogue(2, 10))
    ws.origin.speed = 64_000
    held = [segment_id for _, segment_id in ws.downloadable()[:2]]  # its first claim
    gate = threading.Event()  # the first worker's two downloads hang until the test opens it
    for segment_id in held:
        ws.origin.add_fault(ws.url_path(segment_id), Fault(gate=gate))
    first = shared.start("first", "--concurrency", "2", "--lease", "30s")
    # Two .part files with bytes in them: the first two segments are on the wire (the
    # worker also holds its next claim, whose .part files are still empty).
    wait_for(
        lambda: sum(1 for part in ws.part_files() if part.stat().st_size) == 2,
        timeout=30,
        what="the first worker downloading",
    )
    expired = shared.query(
        "UPDATE segments SET lease_until = now() - interval '1 second' "
        "WHERE status = 'processing' AND id = ANY(%s) RETURNING id",
        held,
    )
    assert expired
    second = shared.start("second", "--concurrency", "2", "--lease", "30s")

    def second_worked_while_first_still_held_them() -> bool:
        rows = shared.query(
            "SELECT status, worker LIKE %s FROM segments WHERE id = ANY(%s)",
            f"%:{first.pid}:%",
            held,
        )
        assert all(status == "processing" and ours for status, ours in rows), (
            f"a segment the first worker is still writing changed hands: {rows}"
        )
        return bool(shared.finished_by("second"))

    try:
        wait_for(second_worked_while_first_still_held_them, timeout=60, what="the second at work")
    finally:
        gate.set()
    results = finish({"first": first, "second": second})
    assert all(r.code == 0 for r in results.values()), [r.stderr for r in results.values()]
    assert "not recorded" not in results["first"].stderr
    ws.assert_all_identical()
    assert_each_fetched_once(ws)
    assert {i for (i,) in expired} == set(held) <= shared.finished_by("first")


# -- a global cap, enforced in the database ----------------------------------------------


def test_max_global_caps_requests_in_flight_across_workers(shared: Shared) -> None:
    ws = shared.ws
    ws.write_catalogue(guitar_catalogue(3, 40))
    # Slow answers by a delay, not by `speed`: the throttle sleeps after the last byte, so
    # the origin would still count a request that the client has already finished.
    for _, segment_id in ws.downloadable():
        ws.origin.add_fault(ws.url_path(segment_id), Fault(delay=0.15, times=0))
    cap = ("--max-global", "4", "--concurrency", "4")
    procs = {name: shared.start(name, *cap) for name in ("w1", "w2", "w3")}
    results = finish(procs)
    assert all(r.code == 0 for r in results.values()), [r.stderr for r in results.values()]
    ws.assert_all_identical()
    assert_each_fetched_once(ws)
    assert ws.origin.max_in_flight == 4, "3 x 4 slots wanted work: the cap should be reached"
    assert all(shared.finished_by(name) for name in procs)


# -- PostgreSQL restarted mid-run ------------------------------------------------------


def test_postgres_restart_mid_run_loses_nothing(shared: Shared, pg_cluster: Cluster) -> None:
    ws = shared.ws
    ws.write_catalogue(guitar_catalogue(4, 30))
    ws.origin.speed = 100_000
    procs = {name: shared.start(name, "--concurrency", "4") for name in ("w1", "w2")}
    # Each worker past its start (it has finished a file): a restart then is one mid-run.
    wait_for(
        lambda: len(ws.final_files()) >= 10 and all(shared.finished_by(n) for n in procs),
        timeout=60,
        what="both workers downloading",
    )
    pg_cluster.restart()
    done_at_restart = len(ws.final_files())
    results = finish(procs)
    for name, result in results.items():
        assert result.code == 0, f"{name}: {result.stderr}"
        assert "lost the state DB" in result.stderr
        assert "reconnected" in result.stderr
        assert pg_cluster.password not in result.stderr
    assert done_at_restart < len(ws.downloadable()), "the run ended before the restart"
    ws.assert_all_identical()
    assert_each_fetched_once(ws)
    assert shared.statuses() == Counter(success=len(ws.downloadable()))
    counted = shared.query("SELECT sum(attempts) FROM segments")[0][0]
    assert counted == len(ws.downloadable()), "an outcome was recorded twice"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_postgres_away_worker_idles_then_stops_with_75(shared: Shared, pg_cluster: Cluster) -> None:
    ws = shared.ws
    ws.write_catalogue(guitar_catalogue(3, 20))
    ws.origin.speed = 100_000
    proc = shared.start("w1", "--concurrency", "4", "--lease", "2s")
    try:
        wait_for(lambda: len(ws.final_files()) >= 5, timeout=30, what="downloads under way")
        pg_cluster.stop("fast")
        done = len(ws.final_files())
        wait_for(lambda: not ws.part_files(), timeout=30, what="in-flight downloads to end")
        assert len(ws.final_files()) > done, "downloads in flight did not go on"
        before = cpu_seconds(proc.pid)
        time.sleep(2)  # a measurement window, not a synchronisation
        assert cpu_seconds(proc.pid) - before < 0.5, "a worker waiting for PostgreSQL spins"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        pg_cluster.start()
    assert proc.returncode == 75, err
    assert "cannot reach the state DB" in err and shared.password not in err
    result = shared.run("--lease", "2s", "--json")
    assert result.code == 0, result.stderr
    ws.assert_all_identical()
    assert all(n == 1 for n in bodies(ws.origin.log).values()), "a finished file was fetched again"


# -- several hosts: network namespaces ---------------------------------------------------

NETNS_SUBNET = "10.231"


@dataclass
class Host:
    """A network namespace joined to this machine by a veth pair."""

    netns: str
    address: str  # the namespace's own side
    gateway: str  # this machine's side: where PostgreSQL and the origin listen


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, text=True)


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2's `ip`")
    made: list[Host] = []
    tag = os.getpid() % 10000
    try:
        for n in range(1, 4):
            netns, outer, inner = f"tfb{tag}n{n}", f"tfb{tag}h{n}", f"tfb{tag}c{n}"
            host = Host(netns, f"{NETNS_SUBNET}.{n}.2", f"{NETNS_SUBNET}.{n}.1")
            _ip("netns", "add", netns)
            made.append(host)
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", netns)
            _ip("addr", "add", f"{host.gateway}/24", "dev", outer)
            _ip("link", "set", outer, "up")
            _ip("-n", netns, "addr", "add", f"{host.address}/24", "dev", inner)
            _ip("-n", netns, "link", "set", inner, "up")
            _ip("-n", netns, "link", "set", "lo", "up")
    except subprocess.CalledProcessError as exc:
        for host in made:
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)
        pytest.skip(f"cannot create network namespaces here: {exc.stderr.strip()}")
    try:
        yield made
    finally:
        for host in made:
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)


def test_workers_on_three_hosts_over_veth(
    hosts: list[Host], pg_cluster: Cluster, keys: Keys, tmp_path: Path
) -> None:
    content = SyntheticContent(min_size=2048, max_size=48 * 1024)
    with Origin(content=content, public_keys={KEY_PAIR_ID: keys.public}, host="0.0.0.0") as origin:
        origin.speed = 250_000
        ws = Workspace(tmp_path, origin, keys)
        ws.write_catalogue(guitar_catalogue(4, 40))
        database = pg_cluster.create_database()
        shared = Shared(ws, pg_cluster.url(database))
        pg_cluster.listen_also([h.gateway for h in hosts])
        try:
            probe = subprocess.run(
                ["ip", "netns", "exec", hosts[0].netns, sys.executable, "-c",
                 "import socket; s = socket.socket(); s.settimeout(2); "
                 f"print(s.connect_ex(('127.0.0.1', {pg_cluster.port})))"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            assert probe.stdout.strip() != "0", "a namespace reaches this machine's loopback"
            for n, host in enumerate(hosts, 1):
                argv = [
                    "ip", "netns", "exec", host.netns, sys.executable, "-m", "tfbulk", "run",
                    "--snapshot", str(ws.snapshot), "--dest", str(ws.dest),
                    "--state", pg_cluster.url(database, host=host.gateway),
                    "--url-template", f"http://{host.gateway}:{origin.port}/truefire/{{segment_id}}.mp4",
                    "--key-pair-id", KEY_PAIR_ID, "--private-key", str(keys.private),
                    "--concurrency", "4", "--no-progress",
                    "--log-file", str(tmp_path / f"h{n}.jsonl"),
                ]  # fmt: skip
                shared.procs.append(
                    subprocess.Popen(
                        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                        stdin=subprocess.DEVNULL, env=child_env(), cwd=tmp_path,
                    )
                )  # fmt: skip
            seen: set[str] = set()

            def every_host_connected() -> bool:
                with pg_cluster.admin() as conn:
                    rows = conn.execute(
                        "SELECT DISTINCT host(client_addr) FROM pg_stat_activity "
                        "WHERE application_name = 'tfbulk' AND client_addr IS NOT NULL"
                    ).fetchall()
                seen.update(r[0] for r in rows)
                return {h.address for h in hosts} <= seen

            wait_for(every_host_connected, timeout=60, what="all three hosts on PostgreSQL")
            results = finish({f"h{n}": proc for n, proc in enumerate(shared.procs, 1)})
            for name, result in results.items():
                assert result.code == 0, f"{name}: {result.stderr}"
            assert seen <= {h.address for h in hosts}, f"a worker came from elsewhere: {seen}"
            ws.assert_all_identical()
            assert_each_fetched_once(ws)
            assert all(shared.finished_by(f"h{n}") for n in (1, 2, 3)), "a host did nothing"
        finally:
            shared.reap()
            pg_cluster.listen_also([])
            pg_cluster.drop_database(database)


def test_status_lists_live_workers(shared: Shared) -> None:
    ws = shared.ws
    ws.write_catalogue(guitar_catalogue(3, 20))
    ws.origin.speed = 50_000
    proc = shared.start(
        "w1", "--concurrency", "2", "--lease", "3s", "--bwlimit", "512K", "--max-rps", "50"
    )
    try:
        wait_for(lambda: ws.final_files(), timeout=30, what="downloads under way")
        status = ws.cli("status", "--state", shared.url, "--json")
        assert status.code == 0, status.stderr
        (worker,) = status.json["workers"]
        assert worker["pid"] == proc.pid and worker["live"] is True
        # Claimed counts the segments this worker holds: two downloading, and any that are
        # downloaded and waiting for their group commit. Only two are ever on the wire.
        assert worker["claimed"] > 0
        assert ws.origin.max_in_flight <= 2
        assert worker["heartbeat_age_s"] < 3
        human = ws.cli("status", "--state", shared.url)
        assert f":{proc.pid}:" in human.stdout and "ago" in human.stdout
        assert worker["limits"]["bwlimit"] == "512 KiB/s" and worker["limits"]["max_rps"] == 50
        assert "bwlimit 512 KiB/s · max-rps 50" in human.stdout
        assert shared.password not in human.stdout + human.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    after = ws.cli("status", "--state", shared.url, "--json").json
    assert after["workers"] == [] and after["processing"] == 0


# -- the other commands against the shared store ------------------------------------


def test_status_failed_retry_and_dry_run_against_postgres(shared: Shared) -> None:
    ws = shared.ws
    state = ("--state", shared.url)
    assert shared.run("--dry-run", "--json").json["new"] == len(ws.downloadable())
    nothing = ws.cli("status", *state)
    assert nothing.code == 2 and "no tfbulk state in" in nothing.stderr
    broken = ws.downloadable()[3][1]
    ws.origin.add_fault(ws.url_path(broken), Fault(status=404, times=1))

    assert shared.run().code == 1
    failed = ws.cli("failed", *state, "--json")
    assert [item["segment_id"] for item in failed.json] == [broken]
    status = ws.cli("status", *state, "--json").json
    assert status["failed"] == 1 and status["workers"] == []
    dry = shared.run("--dry-run", "--json").json
    assert dry["already_done"] == len(ws.downloadable()) - 1 and dry["failed"] == 1
    retry = ws.cli("retry", *state, "--json")
    assert retry.json == {"requeued": 1}
    assert shared.run().code == 0
    ws.assert_all_identical()


def test_verify_against_postgres_requeues_a_damaged_file(shared: Shared) -> None:
    ws = shared.ws
    assert shared.run().code == 0
    course, damaged = ws.downloadable()[2]
    path = ws.file_of(course, damaged)
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))

    verify = ws.cli("verify", "--state", shared.url, "--dest", str(ws.dest), "--full", "--json")
    assert verify.code == 1, verify.stderr
    assert [p["segment_id"] for p in verify.json["problems"]] == [damaged]
    assert verify.json["checked"] == len(ws.downloadable()) and verify.json["requeued"] == 1
    assert shared.query("SELECT status FROM segments WHERE id = %s", damaged) == [("pending",)]

    before = len(ws.origin.log)
    assert shared.run().code == 0
    assert {r.path for r in ws.origin.log[before:]} == {ws.url_path(damaged)}
    ws.assert_all_identical()


def test_doctor_checks_the_postgres_queue(shared: Shared) -> None:
    ws = shared.ws
    fresh, checks = doctor(ws, "--state", shared.url)
    assert fresh.code == 0, fresh.stdout
    assert "first run creates the schema" in checks["state: state DB"]["detail"]

    assert shared.run("--course", "1").code == 0
    known, checks = doctor(ws, "--state", shared.url)
    assert known.code == 0, known.stdout
    assert checks["state: state DB opens"]["status"] == "ok"
    assert "0 live workers" in checks["state: workers"]["detail"]
    remaining = sum(1 for course, _ in ws.downloadable() if course != 1)
    assert f"{remaining:,} segments" in checks["destination: free space"]["detail"]

    wrong = shared.url.replace(shared.password, "not-the-password")
    broken, checks = doctor(ws, "--state", wrong)
    assert broken.code == 1
    assert checks["state: state DB opens"]["status"] == "fail"
    assert shared.password not in broken.stdout + broken.stderr


def test_bad_state_urls_fail_with_exit_2_and_no_password(shared: Shared) -> None:
    wrong = shared.url.replace(shared.password, "not-the-password")
    for url in (wrong, shared.url.rsplit(":", 1)[0] + ":1/db"):
        result = shared.ws.run("--state", url)
        assert result.code == 2, result.stderr
        assert "cannot connect to the state DB" in result.stderr
        assert "not-the-password" not in result.stderr
        assert shared.password not in result.stderr
        assert result.stderr.count("\n") == 1
    short = shared.run("--lease", "0.5s")
    assert short.code == 2 and "--lease must be at least" in short.stderr


def test_without_psycopg_the_message_says_what_to_install(shared: Shared) -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None; from tfbulk.cli import main; "
        f"main(['status', '--state', {shared.url!r}])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=child_env()
    )
    assert proc.returncode == 2
    assert "pip install 'tfbulk[postgres]'" in proc.stderr


def test_a_version_1_queue_gains_the_workers_limits(shared: Shared) -> None:
    """A queue made by the previous tfbulk (schema 1) is upgraded by the first new worker."""
    from tfbulk.state.schema import POSTGRES_STEPS

    with psycopg.connect(shared.url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA tfbulk")
        conn.execute("SET search_path TO tfbulk")
        conn.execute("CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL)")
        conn.execute(POSTGRES_STEPS[1])
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    assert shared.run("--course", "1", "--max-rps", "100").code == 0
    assert shared.query("SELECT value FROM meta WHERE key = 'schema_version'") == [("3",)]
    assert shared.query(
        "SELECT column_default FROM information_schema.columns "
        "WHERE table_name = 'workers' AND column_name = 'limits'"
    )
