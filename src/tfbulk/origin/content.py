"""What the origin serves: deterministic video-like bodies computed on demand, or real files."""

from __future__ import annotations

import hashlib
import random
import struct
from pathlib import Path
from urllib.parse import unquote

BLOCK = 64 * 1024
MD5_ETAG_LIMIT = 512 << 20  # bigger bodies get multipart-style ETags, as S3 gives them


class SyntheticContent:
    """Deterministic MP4-like bodies: an `ftyp` box, then an `mdat` box of seeded noise.

    Any byte range is computed on demand, so a 256 MiB body costs no memory, and a test
    can compare a downloaded file with `body(path)` byte for byte.
    """

    def __init__(self, min_size: int = 2048, max_size: int = 64 * 1024, seed: int = 7) -> None:
        self.min_size, self.max_size, self.seed = min_size, max_size, seed
        self._versions: dict[str, int] = {}
        self._md5: dict[tuple[str, int], str] = {}
        self._sizes: dict[str, int] = {}

    def set_size(self, path: str, size: int) -> None:
        self._sizes[path] = size

    def change(self, path: str) -> None:
        """A new version of the object: new bytes, new ETag (for If-Range tests)."""
        self._versions[path] = self._versions.get(path, 0) + 1

    def size(self, path: str) -> int | None:
        if not path.endswith(".mp4"):
            return None
        if path in self._sizes:
            return self._sizes[path]
        rng = random.Random(f"{self.seed}:{path}:size")
        return rng.randint(self.min_size, self.max_size)

    def read(self, path: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of the current version of `path`."""
        version = self._versions.get(path, 0)
        header = _mp4_header(self.size(path) or 0)
        out = bytearray()
        position = start
        while position < end:
            if position < len(header):
                piece = header[position : min(end, len(header))]
            else:
                offset = position - len(header)
                block = _noise_block(f"{self.seed}:{path}:{version}", offset // BLOCK)
                inner = offset % BLOCK
                piece = block[inner : inner + (end - position)]
            out += piece
            position += len(piece)
        return bytes(out)

    def etag(self, path: str) -> str:
        """A plain MD5 ETag like S3's; past MD5_ETAG_LIMIT a multipart-style `-N` one."""
        version = self._versions.get(path, 0)
        key = (path, version)
        size = self.size(path) or 0
        if size > MD5_ETAG_LIMIT:
            tag = hashlib.md5(f"{self.seed}:{path}:{version}".encode(), usedforsecurity=False)
            return f'"{tag.hexdigest()}-{1 + size // (64 << 20)}"'
        if key not in self._md5:
            digest = hashlib.md5(usedforsecurity=False)
            for start in range(0, size, 1 << 20):
                digest.update(self.read(path, start, min(size, start + (1 << 20))))
            self._md5[key] = digest.hexdigest()
        return f'"{self._md5[key]}"'

    def body(self, path: str) -> bytes:
        """The whole current body (tests compare downloaded files with it)."""
        return self.read(path, 0, self.size(path) or 0)


class DirectoryContent:
    """Real files under a folder, for rehearsing against a copy of the catalogue."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _file(self, path: str) -> Path | None:
        candidate = (self.root / unquote(path).lstrip("/")).resolve()
        if self.root not in candidate.parents or not candidate.is_file():
            return None
        return candidate

    def size(self, path: str) -> int | None:
        file = self._file(path)
        return file.stat().st_size if file else None

    def read(self, path: str, start: int, end: int) -> bytes:
        file = self._file(path)
        assert file is not None
        with file.open("rb") as handle:
            handle.seek(start)
            return handle.read(end - start)

    def etag(self, path: str) -> str:
        file = self._file(path)
        assert file is not None
        stat = file.stat()
        return f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'


def _mp4_header(size: int) -> bytes:
    """`ftyp` then the `mdat` box header (64-bit `largesize` form past 4 GiB)."""
    ftyp = struct.pack(">I4s4sI8s", 24, b"ftyp", b"isom", 0x200, b"isomiso2")
    payload = max(8, size - len(ftyp))
    if payload <= 0xFFFFFFFF:
        return ftyp + struct.pack(">I4s", payload, b"mdat")
    return ftyp + struct.pack(">I4sQ", 1, b"mdat", payload)


def _noise_block(key: str, index: int) -> bytes:
    return random.Random(f"{key}:{index}").randbytes(BLOCK)
