"""The S3 sink's parts wait in a spool file, not in memory: a body of several parts goes
through the real PartUploader (writer threads, spool, upload log) to a client that reads
each part back from the file it is given, while tracemalloc counts what Python holds."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tfbulk.pipeline.s3dest import S3Destination, S3Part, S3Writer
from tfbulk.pipeline.s3resume import UploadLog
from tfbulk.pipeline.transport import FileBody
from tfbulk.settings import S3Location

MiB = 1 << 20
PART = 8 * MiB
CHUNK = 64 * 1024


@dataclass
class ReadingBack:
    """Stands in for S3: takes each part from its file and checks its Content-MD5."""

    parts: list[bytes] = field(default_factory=list)  # each part's MD5
    files: list[os.stat_result] = field(default_factory=list)

    async def create_upload(self, key: str) -> str:
        return "upload-1"

    async def upload_part(
        self, key: str, upload_id: str, number: int, body: object, md5: bytes
    ) -> str:
        assert isinstance(body, FileBody), type(body)  # not a buffer in memory
        assert number == len(self.parts) + 1
        self.files.append(os.fstat(body.fd))
        assert os.fstat(body.fd).st_size == body.size
        digest = hashlib.md5()
        for offset in range(0, body.size, MiB):
            digest.update(os.pread(body.fd, min(MiB, body.size - offset), offset))
        assert digest.digest() == md5
        self.parts.append(md5)
        return f'"{md5.hex()}"'


def body_bytes(size: int) -> Iterator[bytes]:
    """The body as the transport hands it over, one piece at a time."""
    for n in range(0, size, CHUNK):
        yield bytes([n % 251]) * min(CHUNK, size - n)


async def upload(tmp_path: Path, size: int) -> tuple[S3Part, ReadingBack, int, str | None]:
    """Feed a `size`-byte body the way the transport does (pausing when refused); the
    part, the client, the peak of Python's allocations meanwhile, the body's MD5."""
    client = ReadingBack()
    log = UploadLog(str(tmp_path / "state.db"))
    dest = S3Destination(S3Location("bucket", "videos"), client, log)  # type: ignore[arg-type]
    writer = S3Writer(client, PART, tmp_path / "spool")  # type: ignore[arg-type]
    part = S3Part(dest, "videos/1.mp4")
    woken = asyncio.Event()
    uploader = writer.open(part, 0, hashlib.md5(), woken.set)
    tracemalloc.start()
    try:
        for chunk in body_bytes(size):
            while not uploader.take(chunk):
                await woken.wait()
                woken.clear()
            del chunk
        await uploader.finish()
        peak = tracemalloc.get_traced_memory()[1]
        assert not writer.threads._open  # every part's writer finished: none kept ticking
    finally:
        tracemalloc.stop()
        writer.close()
        log.close()
    return part, client, peak, uploader.md5


def test_parts_go_up_from_an_unnamed_0600_spool_not_from_memory(tmp_path: Path) -> None:
    size = 2 * PART + 12345
    part, client, peak, md5 = asyncio.run(upload(tmp_path, size))
    whole = b"".join(body_bytes(size))
    assert client.parts == [
        hashlib.md5(whole[start : start + PART]).digest() for start in range(0, size, PART)
    ]
    assert md5 == hashlib.md5(whole).hexdigest()
    assert part.size == size
    for found in client.files:
        assert stat.S_IMODE(found.st_mode) == 0o600
        assert found.st_nlink == 0  # no name: nothing left behind by a kill
    assert peak < PART // 4, f"{peak / MiB:.1f} MiB held in Python for {PART // MiB} MiB parts"
    assert list((tmp_path / "spool").iterdir()) == []


def test_a_small_body_waits_for_its_put_in_the_spool(tmp_path: Path) -> None:
    size = 3 * MiB
    part, client, peak, md5 = asyncio.run(upload(tmp_path, size))
    assert client.parts == []  # one PUT, once verified
    assert part.pending is not None
    body, digest = part.pending
    assert isinstance(body, FileBody) and body.size == size
    assert os.pread(body.fd, size, 0) == b"".join(body_bytes(size))
    assert digest == hashlib.md5(b"".join(body_bytes(size))).digest()
    assert md5 == digest.hex()
    assert peak < 2 * MiB  # a writer batch or two, not the body
    part.close()
    assert part.spool is None
