"""Commands that only read the state DB load no HTTP stack, no crypto and no event loop:
they answer in the time Python takes to start, plus the state DB."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import Workspace, child_env

HEAVY = ("pycurl", "httpx", "cryptography", "asyncio", "anyio", "prometheus_client")

PROBE = """
import sys
from tfbulk.entry import main
sys.argv = ["tfbulk", *ARGS]
try:
    main()
except SystemExit:
    pass
import json
print(json.dumps(sorted(m for m in HEAVY if m in sys.modules)), file=sys.stderr)
"""


def loaded_by(ws: Workspace, *args: str) -> list[str]:
    """The heavy modules imported once `tfbulk ARGS` has run in a fresh interpreter."""
    code = PROBE.replace("ARGS", repr(list(args))).replace("HEAVY", repr(HEAVY))
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(None),
        cwd=ws.root,
        stdin=subprocess.DEVNULL,
    )
    return json.loads(proc.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("command", ["status", "failed", "retry"])
def test_state_commands_import_no_http_stack(ws: Workspace, command: str) -> None:
    assert ws.run().code == 0
    assert loaded_by(ws, command, "--dest", str(ws.dest)) == []


def test_version_imports_nothing_heavy(ws: Workspace) -> None:
    assert loaded_by(ws, "--version") == []


def test_run_does_load_them(ws: Workspace) -> None:
    """The probe can see a heavy import: a run needs every one of them."""
    loaded = loaded_by(ws, *ws.run_args("--dry-run"))
    assert "httpx" in loaded
