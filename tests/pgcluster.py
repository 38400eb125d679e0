"""A throw-away PostgreSQL cluster for the test session: no mocks, a real server.

`initdb` and `pg_ctl` from the Debian/Ubuntu `postgresql` package run in a temporary folder
on a free port. The server refuses to run as root, so as root it runs as `nobody`, in a
folder it owns. TCP logins need a password (so tests see that it never leaks); each test
gets a database of its own.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

psycopg = pytest.importorskip("psycopg", reason="psycopg is needed for the PostgreSQL tests")

USER = "tfbulk"
UNPRIVILEGED = "nobody"
PORT_ATTEMPTS = 3


def server_bindir() -> Path | None:
    """The newest installed server's bin folder (pg_config knows only the client's)."""
    found = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin/initdb") if p.parts[4].isdigit()),
        key=lambda p: int(p.parts[4]),
    )
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Cluster:
    """One server: start, stop, restart, and a database per test."""

    bindir: Path
    root: Path
    port: int
    password: str = field(default_factory=lambda: "pw-" + secrets.token_hex(8))
    listen: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    uid: int | None = None
    gid: int | None = None
    started_once: bool = False

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str, host: str = "127.0.0.1") -> str:
        return f"postgresql://{USER}:{self.password}@{host}:{self.port}/{database}"

    def _run(self, *argv: str, timeout: float = 60) -> None:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            user=self.uid,
            group=self.gid,
            cwd=self.root,
        )
        if result.returncode != 0:
            log = (self.root / "server.log").read_text() if self.started_once else ""
            raise RuntimeError(f"{argv[0]} failed: {result.stderr}\n{result.stdout}\n{log}")

    def init(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        self._chown(pwfile)
        self._run(
            str(self.bindir / "initdb"),
            "-D", str(self.data),
            "-U", USER,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        pwfile.unlink()
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 0.0.0.0/0 scram-sha-256\n")

    def start(self) -> None:
        options = " ".join(
            [
                f"-p {self.port}",
                f"-c listen_addresses={','.join(self.listen)}",
                f"-c unix_socket_directories={self.root}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D", str(self.data),
            "-l", str(self.root / "server.log"),
            "-o", options,
            "-w", "-t", "60",
            "start",
        )  # fmt: skip
        self.started_once = True

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """A fast shutdown: every session is disconnected, as when a server is restarted."""
        self.stop("fast")
        self.start()

    def listen_also(self, addresses: list[str]) -> None:
        """Serve on more addresses (they must exist): needs a restart."""
        self.listen = ["127.0.0.1", *addresses]
        self.restart()

    def admin(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(self.url(database), autocommit=True)

    def create_database(self) -> str:
        name = "t_" + secrets.token_hex(6)
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def _chown(self, path: Path) -> None:
        if self.uid is not None:
            os.chown(path, self.uid, self.gid or -1)


def start_cluster() -> Cluster:
    bindir = server_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    uid = gid = None
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam(UNPRIVILEGED)
        except KeyError:
            pytest.skip(f"running as root and there is no `{UNPRIVILEGED}` user to run postgres")
        uid, gid = account.pw_uid, account.pw_gid
    root = Path(tempfile.mkdtemp(prefix="tfbulk-pg-"))
    cluster = Cluster(bindir=bindir, root=root, port=free_port(), uid=uid, gid=gid)
    cluster._chown(root)
    cluster.init()
    # pytest-xdist workers start their clusters at once: a free port may be taken before
    # the server binds it, so another one is tried.
    for _ in range(PORT_ATTEMPTS - 1):
        try:
            cluster.start()
            return cluster
        except RuntimeError:
            cluster.port = free_port()
    cluster.start()
    return cluster


def running_cluster() -> Iterator[Cluster]:
    """The session's cluster (conftest's `pg_cluster`): started once, removed at the end."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        try:
            cluster.stop("immediate")
        finally:
            shutil.rmtree(cluster.root, ignore_errors=True)


def fresh_database(cluster: Cluster) -> Iterator[str]:
    """A new, empty database for one test (conftest's `pg_url`), dropped afterwards."""
    name = cluster.create_database()
    yield cluster.url(name)
    cluster.drop_database(name)
