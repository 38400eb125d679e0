"""Where an S3 part waits for its upload: a file on the local disk, not a buffer in memory.

A part is 16 MiB by default and up to 5 GiB; held in memory, each download would cost the
process a part being filled plus the one going up. Spooled instead, the process holds a
writer's batch (a few hundred KiB) whatever the part size, and the part lives in the page
cache for the second or so before it is uploaded and truncated away, which usually never
reaches the disk. The file has no name (O_TMPFILE where the kernel has it, else unlinked at
once; mode 0600), so nothing is left behind by a kill; one per download, reused for its
parts, closed with the claim.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from tfbulk.pipeline.transport import FileBody


class Spool:
    """One download's part on disk: written by a writer thread, read back by the upload."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._file = tempfile.TemporaryFile(dir=folder, buffering=0)  # noqa: SIM115  # kept open across parts
        self.fd = self._file.fileno()

    def body(self, size: int) -> FileBody:
        """The part written so far, as a request body."""
        return FileBody(self.fd, size)

    def reset(self) -> None:
        """Empty the file for the next part (its pages are dropped, not written back)."""
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)

    def close(self) -> None:
        self._file.close()


class PartDigests:
    """The whole body's running MD5 and the current part's (its Content-MD5), fed together
    by the writer thread as the bytes reach the spool."""

    def __init__(self, whole: hashlib._Hash) -> None:
        self.whole = whole
        self.part = hashlib.md5(usedforsecurity=False)

    def update(self, data: bytes, /) -> None:
        self.whole.update(data)
        self.part.update(data)

    def hexdigest(self) -> str:
        return self.whole.hexdigest()
