"""The destination folder: where files may be written, and how they become final.

Every path tfbulk writes goes through here, so "inside --dest, files 0644, folders 0755,
never a half file at a final path" is enforced in one place.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
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
