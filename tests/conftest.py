"""Shared fixtures: throw-away key pairs, the signature-checking origin, a workspace.

End-to-end tests drive the real `tfbulk` CLI against the real origin on 127.0.0.1. Commands
that only read, sign or refuse bad input, and plain downloads, run in-process (`ws.cli`,
`ws.run`, through tfbulk's own entry point, so the one-line errors and exit codes are the
users'); signals, locks, kill -9 and output written straight to file descriptor 2 (hooks and
their warnings) need a subprocess (`ws.tfbulk`, `ws.run_process`, `ws.start`).
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import sqlite3
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tfbulk.cli import main as cli_main
from tfbulk.credentials import write_key_pair
from tfbulk.origin import Origin, SyntheticContent
from tfbulk.origin.sample import SampleCourse, guitar_catalogue, write_snapshot
from tfbulk.pipeline.plan import video_key
from tfbulk.signing.cloudfront import PrivateKey, PublicKey

KEY_PAIR_ID = "KTESTKEYPAIRID"  # the origin knows it as the RSA key's
EC_KEY_PAIR_ID = "KTESTECDSAP256"  # and this one as the ECDSA key's


@dataclass(frozen=True)
class Keys:
    private: Path
    public_file: Path
    key: PrivateKey

    @property
    def public(self) -> PublicKey:
        return self.key.public_key()


def _key_pair(factory: pytest.TempPathFactory, kind: str) -> Keys:
    folder = factory.mktemp(f"keys-{kind}")
    key = write_key_pair(folder / "private.pem", folder / "public.pem", kind)  # type: ignore[arg-type]
    return Keys(folder / "private.pem", folder / "public.pem", key)


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return _key_pair(tmp_path_factory, "rsa")


@pytest.fixture(scope="session")
def ec_keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return _key_pair(tmp_path_factory, "ec")


@pytest.fixture
def origin(keys: Keys, ec_keys: Keys) -> Iterator[Origin]:
    content = SyntheticContent(min_size=2048, max_size=48 * 1024)
    public_keys = {KEY_PAIR_ID: keys.public, EC_KEY_PAIR_ID: ec_keys.public}
    with Origin(content=content, public_keys=public_keys) as server:
        yield server


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, what: str = "") -> None:
    """Poll `predicate` until true; fail the test if it never becomes true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or predicate}")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict:
        return json.loads(self.stdout)


@dataclass
class Workspace:
    root: Path
    origin: Origin
    keys: Keys
    catalogue: list[SampleCourse] = field(default_factory=list)

    @property
    def snapshot(self) -> Path:
        return self.root / "snapshot.db"

    @property
    def dest(self) -> Path:
        return self.root / "videos"

    @property
    def state(self) -> Path:
        return self.dest / ".tfbulk" / "state.db"

    def write_catalogue(self, catalogue: list[SampleCourse]) -> None:
        self.catalogue = catalogue
        self.snapshot.unlink(missing_ok=True)
        write_snapshot(self.snapshot, catalogue)

    def run_args(self, *extra: str) -> list[str]:
        return [
            "run",
            "--snapshot", str(self.snapshot),
            "--dest", str(self.dest),
            "--url-template", f"{self.origin.base_url}/truefire/{{segment_id}}.mp4",
            "--key-pair-id", KEY_PAIR_ID,
            "--private-key", str(self.keys.private),
            "--backoff-base", "0.05s",
            "--backoff-max", "0.2s",
            *extra,
        ]  # fmt: skip

    def tfbulk(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "tfbulk", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=child_env(env),
            cwd=self.root,
            stdin=subprocess.DEVNULL,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def cli(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> Result:
        """Run `tfbulk ARGS` in this process: no interpreter start-up, same entry point."""
        return run_in_process(list(args), cwd=self.root, env=env, timeout=timeout)

    def run(self, *extra: str, timeout: float = 120, env: dict[str, str] | None = None) -> Result:
        """`tfbulk run` in-process; `start` is the one for signals, locks and kill -9."""
        return self.cli(*self.run_args(*extra), timeout=timeout, env=env)

    def run_process(
        self, *extra: str, timeout: float = 120, env: dict[str, str] | None = None
    ) -> Result:
        """`tfbulk run` in a subprocess: for what reaches stderr by its descriptor (hooks)."""
        return self.tfbulk(*self.run_args(*extra), timeout=timeout, env=env)

    def start(self, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start `tfbulk run` in the background (for signals, locks, kill -9)."""
        return subprocess.Popen(
            [sys.executable, "-m", "tfbulk", *self.run_args(*extra)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=child_env(env),
            cwd=self.root,
        )

    def downloadable(self) -> list[tuple[int, int]]:
        """(course_id, segment_id) of every segment with a video, in catalogue order."""
        return [
            (course.course_id, seg.segment_id)
            for course in self.catalogue
            for seg in course.segments
            if video_key(seg.video)
        ]

    def url_path(self, segment_id: int) -> str:
        return f"/truefire/{segment_id}.mp4"

    def expected(self, segment_id: int) -> bytes:
        return self.origin.content.body(self.url_path(segment_id))

    def file_of(self, course_id: int, segment_id: int) -> Path:
        return self.dest / str(course_id) / f"{segment_id}.mp4"

    def final_files(self) -> list[Path]:
        return sorted(p for p in self.dest.rglob("*.mp4") if ".tfbulk" not in p.parts)

    def part_files(self) -> list[Path]:
        return sorted(self.dest.rglob("*.part"))

    def assert_all_identical(self) -> None:
        for course_id, segment_id in self.downloadable():
            path = self.file_of(course_id, segment_id)
            assert path.exists(), f"{path} missing"
            assert path.read_bytes() == self.expected(segment_id), f"{path} differs"

    def gets(self) -> int:
        """Requests the origin answered with a body (200 or 206)."""
        return sum(1 for r in self.origin.log if r.status in (200, 206))

    def states(self) -> dict[int, str]:
        with sqlite3.connect(self.state) as conn:
            return dict(conn.execute("SELECT id, status FROM segments"))


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFBULK_")}
    env.update({"PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "LC_ALL": "C.UTF-8"})
    env.pop("COLUMNS", None)
    env.update(extra or {})
    return env


def run_in_process(
    args: list[str], cwd: Path, env: Mapping[str, str | None] | None = None, timeout: float = 120
) -> Result:
    """`tfbulk.cli.main(args)` with its own stdin, stdout, stderr and environment.

    The environment is the one `child_env` gives a subprocess (a None in `env` unsets it);
    an unexpected exception becomes a traceback on stderr and exit 1, as `python -m tfbulk`
    would show it. A command still running after `timeout` is a hang: every thread's stack
    is dumped and pytest exits, as a subprocess's timeout would have failed the test
    instead of stalling CI.
    """
    overrides: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TFBULK_")}
    overrides.update({"PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "COLUMNS": None})
    overrides.update(env or {})
    with CliRunner().isolation(env=overrides) as (out, err, _), contextlib.chdir(cwd):
        faulthandler.dump_traceback_later(timeout, exit=True, file=sys.__stderr__)
        try:
            cli_main(args)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception:
            sys.stderr.write(traceback.format_exc())
            code = 1
        finally:
            faulthandler.cancel_dump_traceback_later()
        sys.stdout.flush()
        sys.stderr.flush()
        return Result(code, out.getvalue().decode(), err.getvalue().decode())


@pytest.fixture
def ws(tmp_path: Path, origin: Origin, keys: Keys) -> Workspace:
    workspace = Workspace(tmp_path, origin, keys)
    workspace.write_catalogue(guitar_catalogue(3, 10))
    return workspace


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (skipped where mounting is not allowed)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode().strip()})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


# -- PostgreSQL (tests/pgcluster.py; imported lazily: psycopg is an optional extra) --------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[object]:
    from tests.pgcluster import running_cluster

    yield from running_cluster()


@pytest.fixture
def pg_url(pg_cluster: object) -> Iterator[str]:
    from tests.pgcluster import fresh_database

    yield from fresh_database(pg_cluster)  # type: ignore[arg-type]


# -- S3 (tests/s3server.py: moto's server on 127.0.0.1; imported lazily) ------------------


@pytest.fixture
def s3_server() -> Iterator[object]:
    """A fresh S3-compatible server with one empty bucket, `tfbulk-test`."""
    from tests.s3server import S3Server

    server = S3Server().start()
    server.create_bucket("tfbulk-test")
    yield server
    server.stop()
