"""One writer per `.part` on shared storage, whatever the database believes.

A lease can be taken over from a worker that is alive but could not renew it (it lost
PostgreSQL for longer than `--lease`). Both would then write the same `.part`. To rule
that out, a worker holds a lock on its segments from claim to recorded outcome: one
byte-range lock per segment (offset = segment id) in one file on the shared storage,
`DEST/.tfbulk/parts.lock`. The locks are open-file-description locks: NFS honours them,
closing another descriptor of the file does not drop them, and the kernel drops them
when the process dies, so a killed worker never blocks the segments it held.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from pathlib import Path

from tfbulk.errors import BadInput

LOCK_NAME = "parts.lock"
OFFSETS = 1 << 62  # segment ids map onto this range of lock offsets
PROBE = OFFSETS  # an offset no segment uses: proves at start that locks work here


class PartLocks:
    """Non-blocking per-segment locks shared by every worker writing into one destination."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o755)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise BadInput(f"cannot create the lock file {self.path}: {exc.strerror}") from None
        self._held: set[int] = set()
        self._probe()

    def _probe(self) -> None:
        """Fail at start, not mid-run, where the file system cannot lock.

        Workers started together probe at the same moment: finding the probe lock taken
        by one of them proves that locks work just as well as taking it.
        """
        try:
            self._set(fcntl.F_WRLCK, PROBE)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return
            os.close(self._fd)
            raise BadInput(
                f"{self.path}: file locks do not work on this file system ({exc.strerror}); "
                "shared storage must support them (NFS: do not mount with `nolock`)"
            ) from None
        self._set(fcntl.F_UNLCK, PROBE)

    def acquire(self, segment_id: int) -> bool:
        """True if this process now holds the segment; False if another process does."""
        if segment_id in self._held:
            return True
        try:
            self._set(fcntl.F_WRLCK, segment_id % OFFSETS)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        self._held.add(segment_id)
        return True

    def release(self, segment_id: int) -> None:
        if segment_id in self._held:
            self._set(fcntl.F_UNLCK, segment_id % OFFSETS)
            self._held.discard(segment_id)

    def close(self) -> None:
        """Closing the descriptor drops every lock it holds."""
        os.close(self._fd)
        self._held.clear()

    def _set(self, kind: int, offset: int) -> None:
        # struct flock: l_type, l_whence, l_start, l_len, l_pid (0 for OFD locks), padding.
        request = struct.pack("hhqqi4x", kind, os.SEEK_SET, offset, 1, 0)
        fcntl.fcntl(self._fd, fcntl.F_OFD_SETLK, request)
