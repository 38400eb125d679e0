"""One run per state DB: an advisory lock file that the kernel drops when the process dies.

flock is released on exit, crash or kill -9, so a stale lock never blocks the next run.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from tfbulk.errors import BadInput, StateLocked


class RunLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise StateLocked naming the PID that holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise BadInput(
                f"cannot create the lock file {self.path}: {exc.strerror}; "
                "pass --state PATH on a writable disk, or fix the permissions"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.holder()
            who = f"PID {holder}" if holder else "another process"
            raise StateLocked(
                f"another tfbulk run ({who}) holds the lock on {self.path.with_suffix('')}; "
                "wait for it to finish or stop it, then run again"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def holder(self) -> int | None:
        """The PID written by the current holder, if the lock is held at all."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else None
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
