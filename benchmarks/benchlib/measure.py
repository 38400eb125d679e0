"""Run one command and measure it: wall time, CPU seconds, peak resident memory.

Peak RSS is the trap: `wait4()`'s ru_maxrss survives exec and includes the memory image of
the process that forked the child, so a child forked from this (large) Python process
would report our size. Commands therefore run under `/usr/bin/time -v` (a tiny C parent
whose own image is negligible); without it, VmHWM is sampled from /proc while the
command runs. tfbulk also reports its own VmHWM in `--json`, which the caller prefers.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

GNU_TIME = "/usr/bin/time"
SAMPLE_EVERY = 0.01
_MAXRSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")


@dataclass
class Measured:
    """What one command cost; `rss_method` says how the peak was taken."""

    argv: list[str]
    exit_code: int
    wall_s: float
    cpu_s: float
    peak_rss_bytes: int | None
    rss_method: str
    started_at: float  # time.time() at spawn, to line up with a tfbulk --log-file
    stdout: str
    stderr: str


def have_gnu_time() -> bool:
    return os.access(GNU_TIME, os.X_OK)


def measure(
    argv: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 1800
) -> Measured:
    """Run `argv` to completion (killed after `timeout`) and return its costs."""
    out_dir = cwd / ".measure"
    out_dir.mkdir(parents=True, exist_ok=True)
    stdout, stderr, report = out_dir / "stdout", out_dir / "stderr", out_dir / "time"
    use_time = have_gnu_time()
    command = [GNU_TIME, "-v", "-o", str(report), *argv] if use_time else argv
    with stdout.open("wb") as out, stderr.open("wb") as err:
        started_at, start = time.time(), time.monotonic()
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        sampler = None if use_time else _HwmSampler(proc.pid)
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            watchdog.cancel()
        wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if use_time:
        peak, method = _gnu_time_peak(report), "/usr/bin/time -v"
    else:
        assert sampler is not None
        peak, method = sampler.stop(), f"VmHWM sampled every {SAMPLE_EVERY * 1000:.0f} ms"
    return Measured(
        argv=argv,
        exit_code=proc.returncode,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_bytes=peak,
        rss_method=method,
        started_at=started_at,
        stdout=stdout.read_text(errors="replace"),
        stderr=stderr.read_text(errors="replace"),
    )


def _gnu_time_peak(report: Path) -> int | None:
    match = _MAXRSS.search(report.read_text(errors="replace")) if report.exists() else None
    return int(match.group(1)) * 1024 if match else None


class _HwmSampler:
    """Polls /proc/PID/status for VmHWM (a high-water mark, so the last read is the peak)."""

    def __init__(self, pid: int) -> None:
        self._status = Path(f"/proc/{pid}/status")
        self._peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(SAMPLE_EVERY):
            self._read()

    def _read(self) -> None:
        try:
            for line in self._status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self._peak = max(self._peak, int(line.split()[1]) * 1024)
        except (OSError, ValueError):
            pass

    def stop(self) -> int | None:
        self._done.set()
        self._thread.join()
        return self._peak or None
