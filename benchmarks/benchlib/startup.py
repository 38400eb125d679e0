"""Start-up cost: `tfbulk --version` against a bare `python3 -c pass`, same interpreter.

What a user waits for before any command does anything is the interpreter plus tfbulk's
imports and command-line set-up; the difference between the two isolates tfbulk's part
from the interpreter's (and from this machine's speed that minute). Runs alternate so a
noisy moment hits both, and the medians are compared.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

from benchlib.contenders import child_env

STARTUP_RUNS = 7


def _wall(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from spawn to exit; a command that fails is a broken benchmark, not a figure."""
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, check=True)  # fmt: skip
    return time.perf_counter() - start


def startup_figures(runs: int) -> dict[str, Any]:
    """Medians of `runs` alternating runs of each, after one untimed run of each (which
    writes tfbulk's byte-code if it is missing and warms the page cache)."""
    env = child_env()
    bare = [sys.executable, "-c", "pass"]
    version = [sys.executable, "-m", "tfbulk", "--version"]
    _wall(bare, env)
    _wall(version, env)
    python_runs, tfbulk_runs = [], []
    for _ in range(runs):
        python_runs.append(_wall(bare, env))
        tfbulk_runs.append(_wall(version, env))
    python_s, tfbulk_s = statistics.median(python_runs), statistics.median(tfbulk_runs)
    return {
        "python": sys.executable,
        "runs": runs,
        "python_s": python_s,
        "tfbulk_s": tfbulk_s,
        "difference_s": tfbulk_s - python_s,
        "python_runs_s": python_runs,
        "tfbulk_runs_s": tfbulk_runs,
    }
