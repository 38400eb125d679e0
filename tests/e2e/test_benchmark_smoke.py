"""The benchmark's `--smoke` mode, run for real: nginx, aria2c, curl and the tfbulk CLI.

Not a timed test (CI machines are noisy): it proves the one benchmark command still works
end to end and that its JSON carries what docs/performance.md is built from.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import child_env

ROOT = Path(__file__).resolve().parents[2]
BENCHMARK = ROOT / "benchmarks" / "run.py"
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
)
MISSING = [name for name in ("aria2c", "curl") if shutil.which(name) is None]
MISSING += [] if NGINX else ["nginx"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"benchmark peers not installed: {', '.join(MISSING)} "
        "(Debian packages nginx, aria2, curl; .ci/run installs them)",
    ),
]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARK), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=child_env(),
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tfbulk ÷ curl" in proc.stdout and "targets" in proc.stdout
    return json.loads(out.read_text())


def test_every_contender_downloaded_every_file_identically(smoke: dict) -> None:
    data = smoke["datasets"]["smoke"]
    assert set(data["contenders"]) == {"tfbulk", "aria2c", "curl"}
    assert {r["contender"] for r in data["runs"]} == {"tfbulk", "aria2c", "curl"}
    for run in data["runs"]:
        assert run["exit_code"] == 0, run
        assert run["identical"] == run["files"] == 50, run
        assert run["ok"] and run["problem"] == "", run
        assert run["wall_s"] > 0 and run["cpu_s"] > 0


def test_ratios_are_taken_per_round_against_both_peers(smoke: dict) -> None:
    data = smoke["datasets"]["smoke"]
    assert set(data["ratios"]) == {"aria2c", "curl"}
    for peer, ratio in data["ratios"].items():
        runs = {r["contender"]: r for r in data["runs"]}
        expected = runs[peer]["wall_s"] / runs["tfbulk"]["wall_s"]
        assert ratio["per_round"] == pytest.approx([expected])
        assert ratio["median"] == pytest.approx(expected)


def test_memory_and_scale_figures_are_reported(smoke: dict) -> None:
    tfbulk = smoke["datasets"]["smoke"]["contenders"]["tfbulk"]
    assert tfbulk["rss_method"].startswith("tfbulk --json")
    assert 5 < tfbulk["peak_rss_mb"]["median"] < 1000
    for peer in ("aria2c", "curl"):
        assert smoke["datasets"]["smoke"]["contenders"][peer]["peak_rss_mb"]["median"] > 0
    scale = smoke["scale"]
    assert scale["segments"] == 1000 and scale["done_before_rerun"] == 990
    assert scale["rerun_downloaded"] == 10
    assert scale["plan_s"] > 0 and scale["plan_peak_rss_bytes"] > 0
    assert 0 < scale["rerun_first_download_s"] <= scale["rerun_total_s"]
    assert scale["status_s"] > 0
    assert {t["target"].split(":")[0] for t in smoke["targets"]} == {"scale"}
