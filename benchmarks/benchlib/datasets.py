"""The benchmark's data: generated MP4-like files, their digests, and the inputs each
contender reads (a catalogue snapshot for tfbulk, URL lists for the peers).

Every file starts with a valid `ftyp` box so tfbulk's verification passes exactly as it
would on real videos; the rest is random so no layer can compress or deduplicate it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import struct
from dataclasses import dataclass, replace
from pathlib import Path

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
WRITE_BLOCK = 4 * MIB
SEGMENTS_PER_COURSE = 100
SCALE_FILE_BYTES = 2 * KIB


@dataclass(frozen=True)
class DataSet:
    """`files` files of `file_bytes` each, served under `/<folder>/<id>.mp4`.

    A set over TLS serves another set's files (`source`): one copy on disk, and the same
    bytes, so its figures differ from the plain set's by the transport alone.
    """

    name: str
    files: int
    file_bytes: int
    source: str = ""  # the plain set whose files this one serves; "" for its own
    tls: bool = False
    http: str = ""  # the HTTP version asked of clients that choose one ("1.1" or "2")

    @property
    def folder(self) -> str:
        return self.source or self.name

    @property
    def total_bytes(self) -> int:
        return self.files * self.file_bytes

    def ids(self) -> range:
        return range(1, self.files + 1)

    @staticmethod
    def file_name(segment_id: int) -> str:
        return f"{segment_id}.mp4"


def over_tls(plain: DataSet, name: str, http: str) -> DataSet:
    """`plain`'s files over HTTPS, asking for HTTP `http`."""
    return replace(plain, name=name, source=plain.name, tls=True, http=http)


SMALL = DataSet("small", 2000, 256 * KIB)
LARGE = DataSet("large", 8, 256 * MIB)
SMOKE = DataSet("smoke", 50, 256 * KIB)
SMALL_HTTPS = over_tls(SMALL, "small-https", "1.1")
SMALL_H2 = over_tls(SMALL, "small-h2", "2")
LARGE_HTTPS = over_tls(LARGE, "large-https", "1.1")
SMOKE_H2 = over_tls(SMOKE, "smoke-h2", "2")


def mp4_header(size: int) -> bytes:
    """An `ftyp` box and the head of an `mdat` box that runs to the end of the file."""
    ftyp = struct.pack(">I4s4sI8s", 24, b"ftyp", b"isom", 0x200, b"isomiso2")
    return ftyp + struct.pack(">I4s", size - len(ftyp), b"mdat")


def write_file(path: Path, size: int) -> str:
    """Write one file and return its SHA-1 (the byte-identity check compares with it)."""
    digest = hashlib.sha1(usedforsecurity=False)
    with path.open("wb") as handle:
        block = mp4_header(size)
        while True:
            handle.write(block)
            digest.update(block)
            size -= len(block)
            if size <= 0:
                break
            block = os.urandom(min(WRITE_BLOCK, size))
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, lambda: hashlib.sha1(usedforsecurity=False)).hexdigest()


def generate(data_root: Path, dataset: DataSet) -> dict[str, str]:
    """Files of `dataset` under `data_root/<folder>/` and their digests, reused when present."""
    folder = data_root / dataset.folder
    manifest = data_root / f"{dataset.folder}.manifest.json"
    shape = {"name": dataset.folder, "files": dataset.files, "file_bytes": dataset.file_bytes}
    if manifest.exists():
        saved = json.loads(manifest.read_text())
        if saved.get("dataset") == shape:
            return dict(saved["digests"])
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    digests = {
        dataset.file_name(sid): write_file(folder / dataset.file_name(sid), dataset.file_bytes)
        for sid in dataset.ids()
    }
    manifest.write_text(json.dumps({"dataset": shape, "digests": digests}))
    return digests


def write_scale_file(data_root: Path) -> None:
    """The one small MP4 nginx answers for every `/scale/...` URL."""
    write_file(data_root / "scale.mp4", SCALE_FILE_BYTES)


def write_snapshot(path: Path, segments: int) -> Path:
    """A contract-shaped catalogue snapshot: segments 1..N, 100 per course.

    Rows are generated inside SQLite so a 100,000-segment snapshot takes a blink.
    """
    path.unlink(missing_ok=True)
    courses = max(1, -(-segments // SEGMENTS_PER_COURSE))
    with sqlite3.connect(path) as conn:
        conn.executescript(
            f"""
            CREATE TABLE courses (id INTEGER PRIMARY KEY, title TEXT);
            CREATE TABLE channels (id INTEGER PRIMARY KEY, courseid INTEGER);
            CREATE TABLE segments (id INTEGER PRIMARY KEY, channel_id INTEGER, video TEXT,
                                   title TEXT);
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {courses})
            INSERT INTO courses SELECT i, 'Benchmark course ' || i FROM n;
            INSERT INTO channels SELECT id, id FROM courses;
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {segments})
            INSERT INTO segments
            SELECT i, 1 + (i - 1) / {SEGMENTS_PER_COURSE}, 'mp4:bench/lesson_' || i,
                   'Lesson ' || i FROM n;
            """
        )
    conn.close()
    return path


def write_url_lists(folder: Path, dataset: DataSet, base_url: str) -> tuple[Path, Path]:
    """aria2c's input file and curl's config: the same URLs, unsigned (peers cannot sign)."""
    folder.mkdir(parents=True, exist_ok=True)
    urls = [f"{base_url}/{dataset.folder}/{dataset.file_name(s)}" for s in dataset.ids()]
    aria = folder / f"{dataset.name}.aria2.txt"
    aria.write_text("".join(f"{url}\n" for url in urls))
    curl = folder / f"{dataset.name}.curl.cfg"
    curl.write_text(
        "".join(
            f'url = "{url}"\noutput = "{dataset.file_name(s)}"\n'
            for s, url in zip(dataset.ids(), urls, strict=True)
        )
    )
    return aria, curl


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def check_disk(folder: Path, sets: list[DataSet], *, generated: set[str]) -> None:
    """Refuse to start unless data, one contender's output and some slack fit."""
    sizes = {d.folder: d.total_bytes for d in sets}  # a TLS set adds no data of its own
    to_generate = sum(size for folder, size in sizes.items() if folder not in generated)
    one_output = max((d.total_bytes for d in sets), default=0)
    needed = to_generate + one_output + GIB
    free = free_bytes(folder)
    if free < needed:
        raise SystemExit(
            f"benchmark: not enough free disk in {folder}: {free / GIB:.1f} GiB free, "
            f"{needed / GIB:.1f} GiB needed (data, one download folder, 1 GiB slack)"
        )
