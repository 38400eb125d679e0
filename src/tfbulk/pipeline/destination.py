"""The destination folder: where files may be written, and how they become final.

Every path tfbulk writes goes through here, so "inside --dest, files 0644, folders 0755,
never a half file at a final path, never through a symlink" is enforced in one place.

Nothing under --dest is reached by path. The root is opened once, and each folder below it
is opened from its parent's descriptor one name at a time with O_NOFOLLOW, created first
if missing; a `.part` is created in its folder's descriptor and renamed there. A symlink
planted anywhere under --dest (a folder, a `.part`, a final name) is therefore never
followed: the segment fails with the reason, and a final name that is a link is replaced
by the file, not written through. The check and the use are the same system call, so
there is no window for swapping a folder in between.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import socket
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tfbulk.errors import BadInput, DiskError, StateLocked
from tfbulk.pipeline.checks import HEAD_SIZE, acceptable
from tfbulk.pipeline.plan import PART_SUFFIX, UnsafePath
from tfbulk.settings import STATE_DIR

FILE_MODE = 0o644
DIR_MODE = 0o755
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
FOLDERS_KEPT_OPEN = 256  # folder descriptors cached; past that the cache starts over
RUN_LOCK = "run.lock"
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PART = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


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
    """A `.part` open for the download of one claim: its bytes go to `fd`, `size` so far.

    Opened off the event loop (creating a file can wait on the file system's journal while
    other files are being synced) and kept open across the attempts of its claim, so an
    attempt that starts over truncates instead of reopening. `folder_fd` is its own
    descriptor of the folder, for the rename and the folder's fsync.
    """

    fd: int
    folder_fd: int
    folder: str
    name: str
    root: Path
    size: int

    @property
    def final(self) -> Path:
        """For messages only: the file is never reached by this path."""
        return self.root / self.folder / self.name

    @property
    def path(self) -> Path:
        return self.root / self.folder / (self.name + PART_SUFFIX)

    def start_over(self) -> None:
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.size = 0

    def continue_at(self, offset: int) -> None:
        os.lseek(self.fd, offset, os.SEEK_SET)

    def publish(self) -> None:
        """fsync, then rename to the final name: replaces a file or a link there, never
        writes through one. The folder's fsync (once per batch) makes the rename durable."""
        os.fsync(self.fd)
        os.rename(
            self.name + PART_SUFFIX, self.name, src_dir_fd=self.folder_fd, dst_dir_fd=self.folder_fd
        )

    def close(self) -> None:
        """Done with it for this claim; an empty `.part` is not worth keeping."""
        try:
            if os.fstat(self.fd).st_size == 0:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.name + PART_SUFFIX, dir_fd=self.folder_fd)
        finally:
            os.close(self.fd)
            os.close(self.folder_fd)


@dataclass(frozen=True, slots=True)
class Existing:
    """A valid video already at the final name: the segment is `skipped`."""

    size: int


class Destination:
    """--dest, held open by its descriptor for the whole run."""

    def __init__(self, root: Path, fd: int) -> None:
        self.root = root
        self._fd = fd
        self._folders: dict[str, int] = {}
        self._lock = threading.Lock()
        self._run_lock: int | None = None

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
        resolved = root.resolve()
        return cls(resolved, os.open(resolved, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))

    def __enter__(self) -> Destination:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lock(self, *, shared: bool) -> None:
        """Hold --dest for this run, whatever `--state` says: a second run writing into it
        is exit 3 naming the holder. Workers of one PostgreSQL queue share it (`shared`);
        the kernel drops the lock when the process dies, so a killed run never blocks."""
        path = self.root / STATE_DIR / RUN_LOCK
        try:
            with self._lock:
                folder = self._folder(STATE_DIR)
            fd = os.open(RUN_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                         FILE_MODE, dir_fd=folder)  # fmt: skip
        except UnsafePath as exc:
            raise BadInput(f"{exc}: tfbulk keeps its locks there; remove it") from None
        except OSError as exc:
            raise BadInput(f"cannot create the lock file {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "PostgreSQL workers"
            os.close(fd)
            raise StateLocked(
                f"another tfbulk run ({holder}) holds the lock on {self.root}, writing into "
                "it; wait for it to finish or stop it, or pass another --dest"
            ) from None
        if not shared:
            os.ftruncate(fd, 0)
            os.write(fd, f"PID {os.getpid()} on {socket.gethostname()}\n".encode())
        self._run_lock = fd

    def close(self) -> None:
        with self._lock:
            for fd in self._folders.values():
                os.close(fd)
            self._folders.clear()
        if self._run_lock is not None:
            os.close(self._run_lock)
            self._run_lock = None
        os.close(self._fd)

    def open(self, relative: str, *, known_size: int | None, replace: bool) -> PartFile | Existing:
        """For a planned path: the valid file already there (unless `replace`), or its
        `.part`, opened for writing. UnsafePath if something under --dest is in the way."""
        folder, _, name = relative.rpartition("/")
        with self._lock:
            folder_fd = os.dup(self._folder(folder))
        try:
            if not replace and (size := _valid_size(folder_fd, name, known_size)) is not None:
                os.close(folder_fd)
                return Existing(size)
            fd, size = self._open_part(folder_fd, folder, name)
        except BaseException:
            os.close(folder_fd)
            raise
        return PartFile(fd, folder_fd, folder, name, self.root, size)

    def _open_part(self, folder_fd: int, folder: str, name: str) -> tuple[int, int]:
        """Only ever a regular file we may write: a link, a fifo or a folder there fails."""
        part = name + PART_SUFFIX
        shown = self.root / folder / part
        try:
            fd = os.open(part, _PART, FILE_MODE, dir_fd=folder_fd)
        except OSError as exc:
            self.raise_if_disk(exc, shown)
            if exc.errno == errno.ELOOP:
                raise UnsafePath(f"{shown} is a symlink; tfbulk writes through none") from None
            if exc.errno == errno.EISDIR:
                raise UnsafePath(f"{shown} is a folder, not a file") from None
            raise
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise UnsafePath(f"{shown} is not a regular file")
        os.set_blocking(fd, True)
        if stat.S_IMODE(info.st_mode) != FILE_MODE:  # a metadata write: only when needed
            os.fchmod(fd, FILE_MODE)
        return fd, info.st_size

    def _folder(self, relative: str) -> int:
        """The descriptor of folder `relative` (cached), each level opened without
        following a symlink and created (0755) if missing."""
        if not relative:
            return self._fd
        if (cached := self._folders.get(relative)) is not None:
            return cached
        parent, _, name = relative.rpartition("/")
        parent_fd = self._folder(parent)
        fd = self._open_folder(parent_fd, relative, name)
        if len(self._folders) >= FOLDERS_KEPT_OPEN:
            keep = {p: self._folders[p] for p in _prefixes(relative) if p in self._folders}
            for path, old in self._folders.items():
                if path not in keep:
                    os.close(old)
            self._folders = keep
        self._folders[relative] = fd
        return fd

    def _open_folder(self, parent_fd: int, relative: str, name: str) -> int:
        shown = self.root / relative
        try:
            try:
                return os.open(name, _FOLDER, dir_fd=parent_fd)
            except FileNotFoundError:
                created = True
                try:
                    os.mkdir(name, DIR_MODE, dir_fd=parent_fd)
                except FileExistsError:
                    created = False
                fd = os.open(name, _FOLDER, dir_fd=parent_fd)
                if created:
                    os.fchmod(fd, DIR_MODE)
                return fd
        except OSError as exc:
            self.raise_if_disk(exc, shown)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # O_DIRECTORY says ENOTDIR for a link
                if _is_link(parent_fd, name):
                    raise UnsafePath(f"folder {shown} is a symlink; tfbulk follows none") from None
                raise UnsafePath(f"{shown} is in the way: it is not a folder") from None
            raise

    @staticmethod
    def sync_folders(parts: list[PartFile]) -> dict[str, OSError]:
        """What makes a batch's renames durable (the committer calls it)."""
        return sync_folders(parts)

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


def _valid_size(folder_fd: int, name: str, known_size: int | None) -> int | None:
    """The size of the video already at `name`, if it is one we would accept (a link or
    anything but a regular file is not: it gets replaced)."""
    try:
        fd = os.open(name, _READ, dir_fd=folder_fd)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        head = os.read(fd, HEAD_SIZE)
    finally:
        os.close(fd)
    return info.st_size if acceptable(head, info.st_size, known_size) else None


def _is_link(folder_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _prefixes(relative: str) -> list[str]:
    parts = relative.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def sync_folders(parts: list[PartFile]) -> dict[str, OSError]:
    """fsync each folder of `parts` once (what makes their renames durable); errors by folder."""
    errors: dict[str, OSError] = {}
    done: set[str] = set()
    for part in parts:
        if part.folder in done:
            continue
        done.add(part.folder)
        try:
            os.fsync(part.folder_fd)
        except OSError as exc:
            errors[part.folder] = exc
    return errors
