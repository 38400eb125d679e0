"""Bad input: exit 2, one line on stderr naming the problem and the fix, no traceback."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.conftest import Workspace
from tfbulk.origin.sample import SampleCourse, SampleSegment


def replace_arg(args: list[str], flag: str, value: str) -> list[str]:
    index = args.index(flag)
    return [*args[: index + 1], value, *args[index + 2 :]]


def drop_arg(args: list[str], flag: str) -> list[str]:
    index = args.index(flag)
    return [*args[:index], *args[index + 2 :]]


def not_sqlite(ws: Workspace) -> list[str]:
    ws.snapshot.write_text("id,title\n1,Blues\n")
    return ws.run_args()


def missing_table(ws: Workspace) -> list[str]:
    with sqlite3.connect(ws.snapshot) as conn:
        conn.execute("DROP TABLE channels")
    return ws.run_args()


def missing_column(ws: Workspace) -> list[str]:
    with sqlite3.connect(ws.snapshot) as conn:
        conn.execute("ALTER TABLE segments DROP COLUMN video")
    return ws.run_args()


def garbage_key(ws: Workspace) -> list[str]:
    bad = ws.root / "garbage.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    return replace_arg(ws.run_args(), "--private-key", str(bad))


def other_key(key: object, name: str) -> Callable[[Workspace], list[str]]:
    """Run args with a private key CloudFront cannot use."""

    def build(ws: Workspace) -> list[str]:
        path = ws.root / f"{name}.pem"
        path.write_bytes(
            key.private_bytes(  # type: ignore[attr-defined]
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return replace_arg(ws.run_args(), "--private-key", str(path))

    return build


def planned_rows(ws: Workspace) -> int:
    if not ws.state.exists():
        return 0
    with sqlite3.connect(ws.state) as conn:
        return conn.execute("SELECT count(*) FROM segments").fetchone()[0]


CASES: dict[str, tuple[Callable[[Workspace], list[str]], str]] = {
    "missing snapshot": (
        lambda ws: replace_arg(ws.run_args(), "--snapshot", str(ws.root / "nope.db")),
        "does not exist",
    ),
    "snapshot flag missing": (lambda ws: drop_arg(ws.run_args(), "--snapshot"), "--snapshot"),
    "not sqlite": (not_sqlite, "is not a SQLite database"),
    "missing table": (missing_table, "has no table channels"),
    "missing column": (missing_column, "lacks column segments.video"),
    "garbage key": (garbage_key, "is not a PEM private key"),
    "missing key file": (
        lambda ws: replace_arg(ws.run_args(), "--private-key", str(ws.root / "none.pem")),
        "does not exist",
    ),
    "no key at all": (lambda ws: drop_arg(ws.run_args(), "--private-key"), "--private-key"),
    "no key pair id": (lambda ws: drop_arg(ws.run_args(), "--key-pair-id"), "--key-pair-id"),
    "concurrency 0": (lambda ws: [*ws.run_args(), "--concurrency", "0"], "--concurrency"),
    "concurrency not a number": (
        lambda ws: [*ws.run_args(), "--concurrency", "ten"],
        "--concurrency",
    ),
    "expires banana": (lambda ws: [*ws.run_args(), "--expires", "banana"], "--expires"),
    "http 4": (lambda ws: [*ws.run_args(), "--http", "4"], "--http '4' is not one of 1.1, 2, 3"),
    "ca bundle missing": (
        lambda ws: [*ws.run_args(), "--ca-bundle", str(ws.root / "none.pem")],
        "--ca-bundle",
    ),
    "ca bundle not pem": (
        lambda ws: [*ws.run_args(), "--ca-bundle", str(ws.snapshot)],
        "holds no PEM certificate",
    ),
    "max file size banana": (
        lambda ws: [*ws.run_args(), "--max-file-size", "banana"],
        "--max-file-size",
    ),
    "max file size 0": (lambda ws: [*ws.run_args(), "--max-file-size", "0"], "--max-file-size"),
    "unknown placeholder": (
        lambda ws: [*ws.run_args(), "--path-template", "{course}/{segment_id}.mp4"],
        "unknown placeholder {course}",
    ),
    "paths collide": (
        lambda ws: [*ws.run_args(), "--path-template", "{course_id}.mp4"],
        "to the same file",
    ),
    "unknown signer": (lambda ws: [*ws.run_args(), "--signer", "gpg"], "--signer"),
    "rsa 1024 key": (
        other_key(rsa.generate_private_key(65537, 1024), "rsa1024"),
        "is RSA 1024-bit; CloudFront takes RSA of 2048 bits or more, or ECDSA P-256",
    ),
    "ec p-384 key": (other_key(ec.generate_private_key(ec.SECP384R1()), "p384"), "secp384r1"),
    "ed25519 key": (other_key(ed25519.Ed25519PrivateKey.generate(), "ed"), "is Ed25519"),
    "hash algorithm md5": (
        lambda ws: [*ws.run_args(), "--hash-algorithm", "MD5"],
        "--hash-algorithm 'MD5' is not SHA1 or SHA256",
    ),
    "ip address not a cidr": (
        lambda ws: [*ws.run_args(), "--ip-address", "10.0.0.0/40"],
        "--ip-address '10.0.0.0/40' is not an IP address range; use CIDR",
    ),
    "date not a time": (
        lambda ws: [*ws.run_args(), "--date-greater-than", "tomorrow"],
        "--date-greater-than: 'tomorrow' is not a time",
    ),
    "policy resource with a space": (
        lambda ws: [*ws.run_args(), "--policy-resource", "http://h/a b/*"],
        "--policy-resource 'http://h/a b/*' must be a URL pattern in printable ASCII",
    ),
    "policy flag without cloudfront": (
        lambda ws: [*ws.run_args(), "--signer", "none", "--ip-address", "10.0.0.1"],
        "--ip-address applies to --signer cloudfront only",
    ),
    "policy resource misses the urls": (
        lambda ws: [*ws.run_args(), "--policy-resource", "https://other.example/*"],
        "which --policy-resource https://other.example/* does not match",
    ),
    "destination is a file": (
        lambda ws: (
            (ws.root / "file").write_text("x")
            and replace_arg(ws.run_args(), "--dest", str(ws.root / "file"))
        ),
        "not a folder",
    ),
    "unknown flag": (lambda ws: [*ws.run_args(), "--concurrancy", "3"], "--concurrancy"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_line(ws: Workspace, case: str) -> None:
    build, needle = CASES[case]
    args = build(ws)
    snapshot_before = ws.snapshot.read_bytes() if ws.snapshot.exists() else None
    result = ws.cli(*args)
    assert result.code == 2, (result.stdout, result.stderr)
    assert needle in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfbulk: error:"), result.stderr
    assert ws.origin.log == [], "nothing may be requested on bad input"
    assert planned_rows(ws) == 0, "bad input must not plan anything"
    if snapshot_before is not None:
        assert ws.snapshot.read_bytes() == snapshot_before


def test_video_that_escapes_dest_fails_that_segment_only(ws: Workspace) -> None:
    evil = SampleSegment(9001, 100, "mp4:../../../../etc/evil", "Escape")
    fine = SampleSegment(9002, 100, "mp4:blues/lesson_01", "Fine")
    ws.write_catalogue([SampleCourse(1, "Course", (100,), (evil, fine))])
    result = ws.run("--path-template", "{video}.mp4", "--json")
    assert result.code == 1
    data = result.json
    assert data["failed"] == 1 and data["success"] == 1
    assert (ws.dest / "blues" / "lesson_01.mp4").exists()
    assert not list(ws.root.rglob("evil*"))
    failed = ws.cli("failed", "--dest", str(ws.dest), "--json").json
    assert failed[0]["segment_id"] == 9001
    assert "climbs out of the destination" in failed[0]["error"]
    assert ws.url_path(9001) not in {r.path for r in ws.origin.log}
    assert "Traceback" not in result.stderr


def test_status_without_state_db(ws: Workspace) -> None:
    result = ws.cli("status", "--dest", str(ws.dest))
    assert result.code == 2
    assert "no state DB" in result.stderr and "Traceback" not in result.stderr


def test_unwritable_destination(ws: Workspace, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = Path("/sys/tfbulk-test-dest")  # even root may not create folders here
    else:
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o555)
        target = locked / "sub"
    result = ws.cli(*replace_arg(ws.run_args(), "--dest", str(target)))
    assert result.code == 2
    assert "cannot be created" in result.stderr and str(target) in result.stderr
    assert "Traceback" not in result.stderr
