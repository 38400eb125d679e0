"""`tfbulk doctor`: every check passing on a good setup, and each one failing on its own."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import EC_KEY_PAIR_ID, KEY_PAIR_ID, Result, Workspace, wait_for
from tfbulk.origin import Origin, SyntheticContent


def doctor_args(ws: Workspace, *extra: str) -> list[str]:
    args = ws.run_args(*extra)
    args[0] = "doctor"
    for flag in ("--backoff-base", "--backoff-max"):
        index = args.index(flag)
        del args[index : index + 2]
    return args


def doctor(ws: Workspace, *extra: str) -> tuple[Result, dict[str, dict]]:
    result = ws.cli(*doctor_args(ws, *extra, "--json"))
    checks = {f"{c['area']}: {c['name']}": c for c in result.json["checks"]}
    return result, checks


def status_of(checks: dict[str, dict], name: str) -> str:
    return checks[name]["status"]


def test_good_setup_passes_every_check(ws: Workspace) -> None:
    result, checks = doctor(ws, "--probe", "3")
    assert result.code == 0, result.stdout
    assert result.json["ok"] is True
    assert all(c["status"] == "ok" for c in checks.values()), checks
    expected = {
        "snapshot: opens read-only, schema valid", "snapshot: downloadable segments",
        "signing: key pair ID given", "signing: private key", "signing: a sample URL signs",
        "state: state DB", "destination: writable", "destination: free space", "probe: clock",
    }  # fmt: skip
    assert expected <= set(checks)
    probes = [c for name, c in checks.items() if name.startswith("probe: segment")]
    assert len(probes) == 3 and all("200" in c["detail"] for c in probes)
    assert "still needed" in checks["destination: free space"]["detail"]
    assert "Signature=" not in result.stdout


def test_human_output_is_a_table_with_advice(ws: Workspace) -> None:
    args = doctor_args(ws)
    args[args.index("--key-pair-id") : args.index("--key-pair-id") + 2] = []
    result = ws.cli(*args)
    assert result.code == 1
    assert "✗" in result.stdout and "→ pass --key-pair-id" in result.stdout
    assert "1 check failed" in result.stdout


def test_missing_snapshot_fails(ws: Workspace) -> None:
    ws.snapshot.unlink()
    result, checks = doctor(ws)
    assert result.code == 1
    assert status_of(checks, "snapshot: opens read-only, schema valid") == "fail"


def test_nothing_in_scope_fails(ws: Workspace) -> None:
    result, checks = doctor(ws, "--course", "999")
    assert result.code == 1
    assert status_of(checks, "snapshot: downloadable segments") == "fail"


def test_garbage_key_fails(ws: Workspace) -> None:
    bad = ws.root / "bad.pem"
    bad.write_text("not a key")
    args = doctor_args(ws, "--json")
    args[args.index("--private-key") + 1] = str(bad)
    result = ws.cli(*args)
    checks = {f"{c['area']}: {c['name']}": c for c in result.json["checks"]}
    assert result.code == 1 and status_of(checks, "signing: private key") == "fail"


def test_world_readable_key_warns_but_passes(ws: Workspace) -> None:
    shared = ws.root / "shared.pem"
    shared.write_bytes(ws.keys.private.read_bytes())
    shared.chmod(0o644)
    args = doctor_args(ws, "--json")
    args[args.index("--private-key") + 1] = str(shared)
    result, checks = doctor_from(ws, args)
    assert result.code == 0
    assert status_of(checks, "signing: private key permissions") == "warn"
    assert "chmod 600" in checks["signing: private key permissions"]["advice"]


def test_unwritable_destination_fails(ws: Workspace) -> None:
    args = doctor_args(ws, "--json")
    args[args.index("--dest") + 1] = "/sys/tfbulk-doctor-dest"
    result = ws.cli(*args)
    checks = {f"{c['area']}: {c['name']}": c for c in result.json["checks"]}
    if os.geteuid() != 0 and status_of(checks, "destination: writable") == "ok":
        pytest.skip("/sys is writable here")
    assert result.code == 1 and status_of(checks, "destination: writable") == "fail"


def test_not_enough_space_fails(ws: Workspace) -> None:
    ws.origin.content = SyntheticContent(min_size=10**12, max_size=2 * 10**12)
    result, checks = doctor(ws, "--probe", "2")
    assert result.code == 1
    assert status_of(checks, "destination: free space") == "fail"
    assert "still needed" in checks["destination: free space"]["detail"]


def test_state_db_known_sizes_estimate_space(ws: Workspace) -> None:
    assert ws.run("--course", "1").code == 0
    result, checks = doctor(ws)
    assert result.code == 0
    detail = checks["destination: free space"]["detail"]
    remaining = sum(1 for c, _ in ws.downloadable() if c != 1)
    assert f"{remaining:,} segments" in detail
    assert checks["state: integrity check"]["status"] == "ok"
    assert checks["state: schema version"]["status"] == "ok"


def test_corrupt_state_db_fails(ws: Workspace) -> None:
    assert ws.run("--course", "1").code == 0
    ws.state.write_bytes(b"SQLite format 3\x00" + os.urandom(8192))
    result, checks = doctor(ws)
    assert result.code == 1
    failing = [name for name, c in checks.items() if c["status"] == "fail"]
    assert failing and all(name.startswith("state:") for name in failing)


def test_newer_schema_fails(ws: Workspace) -> None:
    assert ws.run("--course", "1").code == 0
    with sqlite3.connect(ws.state) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    result, checks = doctor(ws)
    assert result.code == 1 and status_of(checks, "state: schema version") == "fail"


def test_locked_state_names_the_pid(ws: Workspace) -> None:
    ws.origin.speed = 50_000
    proc = ws.start("--concurrency", "1")
    try:
        wait_for(lambda: ws.final_files(), what="a run holding the lock")
        result, checks = doctor(ws)
        assert checks["state: not locked"]["status"] == "warn"
        assert f"PID {proc.pid}" in checks["state: not locked"]["detail"]
        assert result.code == 0
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


def test_probe_403_gets_the_signing_hint(ws: Workspace) -> None:
    args = doctor_args(ws, "--probe", "2", "--json")
    args[args.index("--key-pair-id") + 1] = "KOTHER"
    result = ws.cli(*args)
    assert result.code == 1
    probes = [c for c in result.json["checks"] if c["name"].startswith("segment")]
    assert probes and all("HTTP 403" in c["detail"] for c in probes)
    assert all("check --key-pair-id" in c["advice"] for c in probes)


def test_probe_flags_clock_skew(ws: Workspace, keys) -> None:
    with Origin(
        content=SyntheticContent(2048, 8192),
        public_keys={KEY_PAIR_ID: keys.public},
        clock=lambda: time.time() + 600,
    ) as skewed:
        args = doctor_args(ws, "--probe", "1")
        args[args.index("--url-template") + 1] = f"{skewed.base_url}/truefire/{{segment_id}}.mp4"
        _result, checks = doctor_from(ws, args)
    assert status_of(checks, "probe: clock") == "warn"
    assert (
        "+600s" in checks["probe: clock"]["detail"] or "+599s" in checks["probe: clock"]["detail"]
    )


def doctor_from(ws: Workspace, args: list[str]) -> tuple[Result, dict[str, dict]]:
    result = ws.cli(*args, "--json")
    return result, {f"{c['area']}: {c['name']}": c for c in result.json["checks"]}


def test_doctor_writes_nothing(ws: Workspace) -> None:
    result, _ = doctor(ws)
    assert result.code == 0
    assert not ws.dest.exists() and ws.origin.log == []
    assert not Path(ws.state).exists()


def test_doctor_names_key_hash_and_policy_and_probes_with_it(ws: Workspace, ec_keys) -> None:
    resource = f"{ws.origin.base_url}/truefire/*"
    args = doctor_args(ws, "--hash-algorithm", "SHA256", "--policy-resource", resource)
    args[args.index("--key-pair-id") + 1] = EC_KEY_PAIR_ID
    args[args.index("--private-key") + 1] = str(ec_keys.private)
    result, checks = doctor_from(ws, [*args, "--probe", "2"])
    assert result.code == 0, result.stdout
    assert checks["signing: private key"]["detail"].endswith(": ECDSA P-256")
    assert checks["signing: signature"]["detail"] == (
        f"ECDSA with SHA256, one custom policy for {resource}, re-signed every second"
    )
    covers = checks["signing: policy resource covers the URLs"]
    assert covers["status"] == "ok"
    assert f"all {len(ws.downloadable())} planned URLs" in covers["detail"]
    probes = [c for name, c in checks.items() if name.startswith("probe: segment")]
    assert len(probes) == 2 and all("200" in c["detail"] for c in probes)
    assert "Policy=" not in result.stdout and "Signature=" not in result.stdout


def test_doctor_fails_a_policy_resource_that_misses_urls(ws: Workspace) -> None:
    narrow = f"{ws.origin.base_url}/truefire/100?.mp4"
    result, checks = doctor(ws, "--policy-resource", narrow)
    assert result.code == 1
    covers = checks["signing: policy resource covers the URLs"]
    assert covers["status"] == "fail" and f"which --policy-resource {narrow}" in covers["detail"]
    assert checks["signing: signature"]["detail"] == (
        f"RSA with SHA1, one custom policy for {narrow}, re-signed every second"
    )
