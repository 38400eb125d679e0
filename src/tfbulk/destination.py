"""The destination folder: where files may be written, and how they become final.

Every path tfbulk writes goes through here, so "inside --dest, files 0644, folders 0755,
never a half file at a final path" is enforced in one place.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from tfbulk.errors import BadInput, DiskError
from tfbulk.plan import UnsafePath

FILE_MODE = 0o644
DIR_MODE = 0o755
PART_SUFFIX = ".part"
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def write_problem(folder: Path) -> str | None:
    """Why a file cannot be created in `folder` (None: it can), found by trying."""
    probe = folder / f".tfbulk-write-test-{os.getpid()}-{time.monotonic_ns()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


@dataclass(slots=True)
class PartFile:
    """A `.part` open for writing: the download's bytes go to `fd`, at `size` so far.

    Opened once per claim, off the event loop (creating a file can wait on the file
    system's journal while other files are being synced), and kept open across the
    attempts of that claim, so a retry that starts over truncates instead of reopening.
    """

    fd: int
    path: Path
    final: Path
    size: int

    def start_over(self) -> None:
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.size = 0

    def continue_at(self, offset: int) -> None:
        os.lseek(self.fd, offset, os.SEEK_SET)

    def close(self) -> None:
        """Done with it for this claim; an empty `.part` is not worth keeping."""
        try:
            if os.fstat(self.fd).st_size == 0:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)


class Destination:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @classmethod
    def prepare(cls, root: Path) -> Destination:
        """Create `root` if needed and prove it is writable, or exit 2 saying why."""
        try:
            root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        except FileExistsError:
            raise BadInput(f"destination {root} exists and is not a folder") from None
        except OSError as exc:
            raise BadInput(f"destination {root} cannot be created: {exc.strerror}") from None
        if not root.is_dir():
            raise BadInput(f"destination {root} is not a folder")
        problem = write_problem(root)
        if problem:
            raise BadInput(
                f"destination {root} is not writable ({problem}); "
                "fix its permissions or pass another --dest"
            )
        return cls(root)

    def locate(self, relative: str) -> Path:
        """The final path of a planned (already normalised) relative path."""
        return self.root / relative

    @staticmethod
    def part_of(final: Path) -> Path:
        return final.with_name(final.name + PART_SUFFIX)

    def make_parent(self, final: Path) -> None:
        """Create the folders above `final` (0755) and refuse one that resolves outside."""
        parent = final.parent
        try:
            self._mkdirs(parent)
        except OSError as exc:
            self.raise_if_disk(exc, parent)
            raise
        real = Path(os.path.realpath(parent))
        if real != self.root and self.root not in real.parents:
            raise UnsafePath(f"folder {parent} resolves outside the destination (symlink?)")

    def open_part(self, final: Path) -> PartFile:
        """Open (or create) `final`'s `.part`; never through a symlink, never anything but a
        regular file we can write (a planted link or folder fails the segment, not a run)."""
        part = self.part_of(final)
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(part, flags, FILE_MODE)
        except OSError as exc:
            self.raise_if_disk(exc, part)
            if exc.errno == errno.ELOOP:
                raise UnsafePath(f"{part} is a symlink; tfbulk writes through none") from None
            raise
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise UnsafePath(f"{part} is not a regular file")
        os.set_blocking(fd, True)
        os.fchmod(fd, FILE_MODE)
        return PartFile(fd, part, final, info.st_size)

    def _mkdirs(self, folder: Path) -> None:
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for path in reversed(missing):
            path.mkdir(mode=DIR_MODE, exist_ok=True)
            path.chmod(DIR_MODE)

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def raise_if_disk(self, exc: OSError, path: Path) -> None:
        """Turn "disk full / not writable" into a DiskError that stops the run."""
        if exc.errno not in DISK_ERRNOS:
            return
        free = self.free_bytes()
        raise DiskError(
            f"cannot write {path}: {exc.strerror} ({free:,} bytes free on that file system); "
            "free some space or fix permissions, then run again to resume"
        ) from exc
