"""One HTTP attempt: GET a freshly signed URL and stream the body into `<final>.part`.

A `.part` left by a dropped connection or a killed run is resumed with Range/If-Range, and
only a 206 that continues exactly where the file stops is stitched on; anything else
starts over. The caller decides what a failure means (see `retry`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import anyio
import httpx

from tfbulk import __version__
from tfbulk.destination import FILE_MODE, Destination
from tfbulk.errors import DiskError
from tfbulk.events import Transfer
from tfbulk.retry import AttemptFailed, Kind, kind_of_status, parse_retry_after
from tfbulk.settings import Tuning
from tfbulk.signing import redact
from tfbulk.verify import HEAD_SIZE, VerifyError, check_body

HASH_BLOCK = 1 << 20
WRITE_BATCH = 256 * 1024  # bytes received before a hand-off to a writer thread
WRITE_INTERVAL = 0.5  # seconds: a slow transfer still reaches the disk (and a resume) this often
WRITEBACK_EVERY = 8 << 20  # bytes written before the kernel is asked to start writeback
WRITE_THREADS = 4  # writers at once: enough to overlap fsyncs, few enough to stay small
ERROR_BODY_LIMIT = 4096
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes \*/(\d+)")
_XML_MESSAGE = re.compile(rb"<Message>([^<]{1,200})</Message>")


@dataclass(frozen=True, slots=True)
class Validator:
    """What identifies the object a `.part` holds a prefix of."""

    etag: str | None
    last_modified: str | None
    size: int | None

    @property
    def if_range(self) -> str | None:
        """If-Range needs a strong ETag; fall back to Last-Modified for a weak one."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified


@dataclass(frozen=True, slots=True)
class Fetched:
    size: int
    md5: str
    etag: str | None
    received: int


class Fetcher:
    """Runs attempts over one shared client (connection pooling, keep-alive)."""

    def __init__(self, client: httpx.AsyncClient, dest: Destination, clock: Callable[[], float]):
        self._client = client
        self._dest = dest
        self._clock = clock
        self._writers = anyio.CapacityLimiter(WRITE_THREADS)

    async def fetch(
        self,
        url: str,
        part: Path,
        validator: Validator | None,
        transfer: Transfer,
        remember: Callable[[Validator], None],
    ) -> Fetched:
        """Download `url` into `part`; raise AttemptFailed (classified) or DiskError."""
        offset = self._resume_offset(part, validator)
        headers = {"Accept-Encoding": "identity"}
        if offset and validator and validator.if_range:
            headers |= {"Range": f"bytes={offset}-", "If-Range": validator.if_range}
        try:
            async with self._client.stream("GET", url, headers=headers) as response:
                if response.status_code == 416 and offset:
                    return await self._finish_complete_part(response, part, offset, validator)
                offset = await self._start_offset(response, offset, validator)
                length = _content_length(response)
                total = offset + length if length is not None else None
                found = Validator(
                    response.headers.get("etag"), response.headers.get("last-modified"), total
                )
                remember(found)
                transfer.size, transfer.resumed_from, transfer.received = total, offset, offset
                body = await self._stream(response, part, offset, transfer, length)
        except httpx.TimeoutException as exc:
            raise AttemptFailed(Kind.NETWORK, _timeout_message(exc)) from None
        except httpx.TransportError as exc:
            raise AttemptFailed(
                Kind.NETWORK, f"connection error: {redact(str(exc)) or type(exc).__name__}"
            ) from None
        return self._verified(body, offset, length, found)

    def _resume_offset(self, part: Path, validator: Validator | None) -> int:
        """Bytes already in `part` that may be resumed; a `.part` with no validator is stale."""
        try:
            size = part.stat().st_size
        except FileNotFoundError:
            return 0
        if size and validator and validator.if_range:
            if validator.size is None or size < validator.size:
                return size
            if size == validator.size:
                return size
        return 0

    async def _start_offset(
        self, response: httpx.Response, offset: int, validator: Validator | None
    ) -> int:
        """Where the body goes in the file: 0 for a 200, `offset` for a matching 206."""
        status = response.status_code
        if status == 200:
            return 0
        if status == 206 and offset:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", ""))
            total = int(match.group(3)) if match and match.group(3) != "*" else None
            expected = validator.size if validator else None
            if match and int(match.group(1)) == offset and (not expected or total == expected):
                return offset
            raise AttemptFailed(
                Kind.NETWORK,
                f"resume refused: Content-Range {response.headers.get('content-range')!r} "
                f"does not continue at byte {offset}",
                restart=True,
            )
        detail = await _error_detail(response)
        raise AttemptFailed(
            kind_of_status(status),
            f"HTTP {status} {_phrase(status, response.reason_phrase)}{detail}",
            retry_after=parse_retry_after(response.headers.get("retry-after"), self._clock()),
        )

    async def _finish_complete_part(
        self, response: httpx.Response, part: Path, offset: int, validator: Validator | None
    ) -> Fetched:
        """416 for `bytes=N-` where N is the full size: the `.part` is already complete."""
        match = _UNSATISFIED_RANGE.fullmatch(response.headers.get("content-range", ""))
        if not match or int(match.group(1)) != offset:
            raise AttemptFailed(
                Kind.NETWORK, "HTTP 416 for the resume range; starting over", restart=True
            )
        etag = validator.etag if validator else None
        head, digest = await anyio.to_thread.run_sync(_hash_file, part)
        body = _Body(received=0, head=head, digest=digest)
        return self._verified(body, offset, 0, Validator(etag, None, offset))

    async def _stream(
        self,
        response: httpx.Response,
        part: Path,
        offset: int,
        transfer: Transfer,
        length: int | None,
    ) -> _Body:
        """Receive on the event loop; hash, write and fsync in batches on a worker thread.

        MD5, write() and fsync() release the GIL, so a batch is digested and written on the
        other core while the loop keeps receiving. A small file is one hand-off: its whole
        body, then fsync, in a single thread call. A slow transfer hands off at least every
        WRITE_INTERVAL, so a killed run loses at most that much of it.
        """
        body = _Body(received=0, head=b"", digest=hashlib.md5(usedforsecurity=False))
        if offset:
            body.head, body.digest = await anyio.to_thread.run_sync(_hash_file, part)
        file = _PartFile(part, offset, body.digest, self._dest)
        file.open()  # on the loop: one cheap call, and the `.part` shows while bytes arrive
        batch: list[bytes] = []
        pending = 0
        written_at = time.monotonic()
        try:
            try:
                async for chunk in response.aiter_raw():
                    if len(body.head) < HEAD_SIZE:
                        body.head += chunk[: HEAD_SIZE - len(body.head)]
                    batch.append(chunk)
                    pending += len(chunk)
                    body.received += len(chunk)
                    transfer.received = offset + body.received
                    if body.received != length and (
                        pending >= WRITE_BATCH or time.monotonic() - written_at >= WRITE_INTERVAL
                    ):
                        out, batch, pending = batch, [], 0
                        await self._run(file.write, out, False)
                        written_at = time.monotonic()
            except BaseException:
                file.keep(batch)  # a resume continues after what did arrive
                raise
            await self._run(file.write, batch, True)
        finally:
            file.close()
        return body

    async def _run(self, func: Callable[..., None], *args: object) -> None:
        """On a writer thread; never abandoned mid-write (a cancel waits for it to return)."""
        await anyio.to_thread.run_sync(func, *args, limiter=self._writers)

    def _verified(self, body: _Body, offset: int, length: int | None, found: Validator) -> Fetched:
        size = offset + body.received
        if length is not None and body.received < length:
            raise AttemptFailed(
                Kind.NETWORK, f"connection closed after {size} of {offset + length} bytes"
            )
        md5 = body.digest.hexdigest()
        try:
            check_body(body.head, size, found.size, md5, found.etag)
        except VerifyError as exc:
            raise AttemptFailed(Kind.INVALID, f"verification failed: {exc}", restart=True) from None
        return Fetched(size=size, md5=md5, etag=found.etag, received=body.received)


@dataclass(slots=True)
class _Body:
    received: int
    head: bytes
    digest: hashlib._Hash


def _hash_file(path: Path) -> tuple[bytes, hashlib._Hash]:
    """The first bytes and the running MD5 of what a `.part` already holds."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        head = handle.read(HEAD_SIZE)
        digest.update(head)
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return head, digest


class _PartFile:
    """The `.part` being written: opened when the body starts (so an in-flight download
    shows on disk), then written and synced in batches on worker threads."""

    def __init__(self, part: Path, offset: int, digest: hashlib._Hash, dest: Destination):
        self._part = part
        self._offset = offset
        self._digest = digest
        self._dest = dest
        self._fd: int | None = None
        self._end = offset  # where the next byte goes
        self._flushed = offset  # everything before this is on its way to the disk

    def write(self, chunks: list[bytes], sync: bool) -> None:
        """Digest `chunks`, append them; with `sync`, fsync so the data is on disk before
        the rename (a power cut never leaves a short file under the final name).
        MD5, write() and fsync() release the GIL: this runs beside the event loop."""
        for chunk in chunks:
            self._digest.update(chunk)
        fd = self.open()
        try:
            _write_all(fd, chunks)
            self._end += sum(len(chunk) for chunk in chunks)
            if sync:
                os.fsync(fd)
            elif self._end - self._flushed >= WRITEBACK_EVERY:
                self._start_writeback(fd)
        except OSError as exc:
            self._dest.raise_if_disk(exc, self._part)
            raise

    def _start_writeback(self, fd: int) -> None:
        """Ask the kernel to start writing what we have so far, without waiting for it.

        The final fsync must put the whole file on disk before the rename; left alone, the
        kernel would hold a 256 MiB body dirty in memory until that fsync and then write it
        all at once while the download sits idle. Started early, the disk works while the
        network does. (POSIX_FADV_DONTNEED starts writeback of dirty pages and drops clean
        ones, so a bulk download also stops crowding the page cache.)
        """
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, self._flushed, self._end - self._flushed, os.POSIX_FADV_DONTNEED)
        self._flushed = self._end

    def keep(self, chunks: list[bytes]) -> None:
        """Best effort after a failed or cancelled attempt: bytes that arrived are kept."""
        if chunks:
            with contextlib.suppress(OSError, DiskError, AttemptFailed):
                _write_all(self.open(), chunks)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def open(self) -> int:
        """An unbuffered descriptor: chunks go straight to the kernel, no copy kept here."""
        if self._fd is not None:
            return self._fd
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if self._offset else os.O_TRUNC)
        try:
            self._fd = os.open(self._part, flags, FILE_MODE)
            os.fchmod(self._fd, FILE_MODE)
        except OSError as exc:
            self._dest.raise_if_disk(exc, self._part)
            raise AttemptFailed(Kind.CLIENT, f"cannot write {self._part}: {exc.strerror}") from None
        return self._fd


def _write_all(fd: int, chunks: list[bytes]) -> None:
    """writev() the batch, finishing any short write chunk by chunk."""
    if not chunks:
        return
    written = os.writev(fd, chunks)
    for chunk in chunks:
        if written >= len(chunk):
            written -= len(chunk)
            continue
        view = memoryview(chunk)[written:]
        written = 0
        while view:
            view = view[os.write(fd, view) :]


def _phrase(status: int, given: str) -> str:
    if given:
        return given
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    return int(value) if value and value.isdigit() else None


async def _error_detail(response: httpx.Response) -> str:
    """CloudFront/S3 put a <Message> in their XML error bodies; quote it (redacted)."""
    body = b""
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) >= ERROR_BODY_LIMIT:
            break
    match = _XML_MESSAGE.search(body)
    return f": {redact(match.group(1).decode(errors='replace'))}" if match else ""


def _timeout_message(exc: httpx.TimeoutException) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "timeout: could not connect"
    if isinstance(exc, httpx.ReadTimeout):
        return "timeout: no data received for the read timeout"
    return f"timeout: {type(exc).__name__}"


def http_client(tuning: Tuning) -> httpx.AsyncClient:
    """One client per run: pooled keep-alive connections, no total-time cap on a body.

    httpx is the API; the transport underneath is aiohttp's (see `transport`), which
    moves about three times the requests per second of httpx's default on this workload.
    Imported here, not at the top: `status`, `failed` and `retry` never pay for aiohttp.
    """
    from tfbulk.transport import AiohttpTransport

    limits = httpx.Limits(
        max_connections=tuning.concurrency, max_keepalive_connections=tuning.concurrency
    )
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            connect=tuning.connect_timeout,
            read=tuning.read_timeout,
            write=tuning.read_timeout,
            pool=None,
        ),
        limits=limits,
        transport=AiohttpTransport(limits=limits),
        headers={"User-Agent": f"tfbulk/{__version__}"},
        follow_redirects=True,
    )
