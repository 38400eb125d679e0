"""`--on-complete` and `--on-finish`: the user's shell commands, run beside the downloads.

A completion hook runs on one of `limit` threads, fed by a queue: the engine only puts a
small record on it, so a slow hook never holds up a download; at most `limit` run at
once, and the run waits for the queued ones before it ends. A hook that fails or outlasts
`--hook-timeout` (killed with its children) is reported on stderr and changes nothing else.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tfbulk.pipeline.events import Event, RunStarted, SegmentFinished
from tfbulk.signing import redact
from tfbulk.state import Status

_STDERR_LOCK = threading.Lock()


def warn(message: str) -> None:
    """One line on stderr, whole, whichever thread writes it."""
    with _STDERR_LOCK:
        os.write(2, f"tfbulk: warning: {redact(message)}\n".encode())


@dataclass(frozen=True)
class Hook:
    """A shell command and how long it may take."""

    flag: str
    command: str
    timeout: float

    def run(self, env: Mapping[str, str], what: str) -> None:
        """Run it with `env` added to ours; its output goes to our stderr (stdout stays
        the `--json` document's)."""
        process = subprocess.Popen(
            ["/bin/sh", "-c", self.command],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=2,
            stderr=2,
            start_new_session=True,  # so a timeout kills what the shell started, too
        )
        try:
            code = process.wait(self.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            warn(f"{self.flag} for {what} was killed after --hook-timeout {self.timeout:g}s")
            return
        if code:
            warn(f"{self.flag} for {what} exited with {code}")


class CompletionHooks:
    """Observer: `--on-complete` once for each downloaded file, `limit` at a time."""

    def __init__(self, hook: Hook, limit: int) -> None:
        self._hook = hook
        self._dest = Path()
        self._queue: queue.SimpleQueue[SegmentFinished | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name="tfbulk-hook", daemon=True)
            for _ in range(limit)
        ]
        for thread in self._threads:
            thread.start()

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._dest = Path(event.dest)
        elif isinstance(event, SegmentFinished) and event.status == Status.SUCCESS:
            self._queue.put(event)

    def close(self) -> None:
        """Wait for the hooks already queued, then stop the threads."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _serve(self) -> None:
        while (event := self._queue.get()) is not None:
            env = {
                "TFBULK_PATH": str(self._dest / event.path),
                "TFBULK_SEGMENT_ID": str(event.segment_id),
                "TFBULK_COURSE_ID": str(event.course_id),
                "TFBULK_SIZE": str(event.size),
            }
            try:
                self._hook.run(env, f"segment {event.segment_id}")
            except OSError as exc:
                warn(f"{self._hook.flag} could not start: {exc.strerror}")


def run_finish_hook(hook: Hook, report: Mapping[str, object], exit_code: int) -> None:
    """`--on-finish`, once: the `run --json` object in a temporary file for it to read."""
    with tempfile.NamedTemporaryFile("w", prefix="tfbulk-summary-", suffix=".json") as summary:
        json.dump(report, summary)
        summary.flush()
        env = {"TFBULK_EXIT_CODE": str(exit_code), "TFBULK_SUMMARY": summary.name}
        try:
            hook.run(env, f"exit code {exit_code}")
        except OSError as exc:
            warn(f"{hook.flag} could not start: {exc.strerror}")
