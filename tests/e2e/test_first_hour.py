"""What a new user meets in the first hour: hints that paste, retry that says what it did,
and output a plain (non-UTF-8) terminal can show."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from tests.conftest import Workspace
from tfbulk.origin import Fault

SCRIPT = Path(sys.executable).with_name("tfbulk")  # the venv's console script


def test_retry_with_nothing_failed_says_so(ws: Workspace) -> None:
    assert ws.run().code == 0
    result = ws.tfbulk("retry", "--dest", str(ws.dest))
    assert result.code == 0
    assert result.stdout.strip() == "nothing to retry: no failed segment"
    course_id = ws.downloadable()[0][0]
    only = ws.tfbulk("retry", "--dest", str(ws.dest), "--course", str(course_id))
    assert only.stdout.strip() == f"nothing to retry: no failed segment among --course {course_id}"


def test_retry_of_an_id_not_in_the_state_db_is_exit_2_naming_it(ws: Workspace) -> None:
    assert ws.run().code == 0
    for flag, value in (("--segment", "99999"), ("--course", "4242")):
        result = ws.tfbulk("retry", "--dest", str(ws.dest), flag, value, "--json")
        assert result.code == 2, result
        assert result.stdout == ""
        assert len(result.stderr.splitlines()) == 1 and value in result.stderr
        assert "not in the state DB" in result.stderr


def test_a_summary_with_failures_ends_with_the_retry_command_that_works(ws: Workspace) -> None:
    course_id, broken = ws.downloadable()[2]
    ws.origin.add_fault(ws.url_path(broken), Fault(status=404, times=1))
    state = ws.root / "elsewhere.db"
    result = ws.run("--no-progress", "--state", str(state))
    assert result.code == 1
    last = result.stdout.strip().splitlines()[-1].strip()
    argv = shlex.split(last)
    assert argv[argv.index("retry") :] == ["retry", "--dest", str(ws.dest), "--state", str(state)]
    pasted = subprocess.run(argv, capture_output=True, text=True, cwd=ws.root, check=False)
    assert pasted.returncode == 0, pasted.stderr
    assert pasted.stdout.startswith("requeued 1 failed segment;")
    assert ws.run("--state", str(state)).code == 0
    assert ws.file_of(course_id, broken).exists()


def test_demo_hints_paste_when_tfbulk_is_not_on_path(tmp_path: Path) -> None:
    """After the README's set-up tfbulk is `.venv/bin/tfbulk`: the hints must say so."""
    folder = tmp_path / "demo"
    env = {**os.environ, "PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}
    argv = [str(SCRIPT), "demo", "--dir", str(folder), "--faults", "--no-progress",
            "--courses", "2", "--segments", "4", "--speed", "0"]  # fmt: skip
    demo = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, check=False)
    assert demo.returncode == 1, demo.stderr
    lines = [line.strip() for line in demo.stdout.splitlines()]
    hints = [line for line in lines if line.startswith(str(SCRIPT))]
    names = [shlex.split(line)[1] for line in hints]
    assert names == ["retry", "status", "failed", "retry", "origin", "run"], demo.stdout
    assert not any(line.startswith("tfbulk ") for line in lines)
    for line in hints[1:3]:  # status and failed, pasted into a shell without tfbulk on PATH
        pasted = subprocess.run(line, shell=True, capture_output=True, text=True, env=env,
                                cwd=tmp_path, check=False)  # fmt: skip
        assert pasted.returncode == 0, (line, pasted.stderr)
    retry = subprocess.run(hints[0], shell=True, capture_output=True, text=True, env=env,
                           cwd=tmp_path, check=False)  # fmt: skip
    assert retry.returncode == 0 and "requeued 1 failed segment" in retry.stdout


def test_without_a_utf8_locale_the_output_is_ascii(ws: Workspace) -> None:
    """`env -i`: no arrows, dots, marks, bars or emoji, in the live view or anywhere."""
    ws.origin.add_fault(ws.url_path(ws.downloadable()[0][1]), Fault(status=404, times=0))
    bare: dict[str, str] = {}
    outputs = []
    for args in (
        ws.run_args("--progress"),
        ws.run_args("--no-progress", "--stats-interval", "0.01s"),
        ws.run_args("--dry-run"),
        ["status", "--dest", str(ws.dest)],
        ["failed", "--dest", str(ws.dest)],
        ["doctor", "--snapshot", str(ws.snapshot), "--dest", str(ws.dest)],
        ["run", "--help"],
    ):
        proc = subprocess.run([sys.executable, "-m", "tfbulk", *args], capture_output=True,
                              env=bare, cwd=ws.root, check=False)  # fmt: skip
        assert proc.returncode in (0, 1), proc.stderr
        outputs.append(proc.stdout + proc.stderr)
    text = b"".join(outputs)
    assert text.isascii(), sorted({c for c in text.decode() if ord(c) > 127})
    assert b"->" in text and b"|" in text
