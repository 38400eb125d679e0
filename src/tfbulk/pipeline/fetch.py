"""One HTTP attempt: GET a freshly signed URL and stream the body into `<final>.part`.

A `.part` left by a dropped connection or a killed run is resumed with Range/If-Range. A
206 is appended only when it continues exactly where the file stops *and* carries the
validator the `.part` was started with (its strong ETag, or with none its Last-Modified):
a server that ignores If-Range can never splice two versions of an object into one file.
Anything else starts over. The caller decides what a failure means (see `retry`).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import anyio
import httpx

from tfbulk import __version__
from tfbulk.pipeline.checks import VerifyError, check_body, read_digest
from tfbulk.pipeline.destination import Destination, PartFile
from tfbulk.pipeline.events import Transfer
from tfbulk.pipeline.limits import RunLimits
from tfbulk.pipeline.retry import AttemptFailed, Kind, kind_of_status, parse_retry_after
from tfbulk.pipeline.transport import RECEIVE_BUFFER, SINK, CurlOptions, CurlTransport
from tfbulk.pipeline.writer import DiskWriter, PartWriter
from tfbulk.settings import Network, Tuning
from tfbulk.signing import redact

USER_AGENT = f"tfbulk/{__version__}"
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
    def strong_etag(self) -> str | None:
        return self.etag if self.etag and not self.etag.startswith("W/") else None

    @property
    def if_range(self) -> str | None:
        """If-Range needs a strong ETag; fall back to Last-Modified for a weak one."""
        return self.strong_etag or self.last_modified

    def same_object(self, other: Validator) -> bool:
        """Does a response's `other` name the object this `.part` was started from?"""
        if self.strong_etag:
            return other.etag == self.strong_etag
        return bool(self.last_modified) and other.last_modified == self.last_modified


@dataclass(slots=True)
class Fetched:
    """A verified body, in its `.part` until the commit makes it final."""

    size: int
    md5: str | None  # None: not known whole (an S3 upload resumed by another process)
    etag: str | None
    received: int


class Fetcher:
    """Runs attempts over one shared transport (connection pool, keep-alive)."""

    body_class: type[_PartBody]

    def __init__(
        self,
        transport: CurlTransport,
        writer: DiskWriter,
        dest: Destination,
        clock: Callable[[], float],
        max_file_size: int,
        limits: RunLimits | None = None,
    ) -> None:
        self._transport = transport
        self._files = _Files(writer, dest, max_file_size, limits)
        self._dest = dest
        self._clock = clock

    async def fetch(
        self,
        url: str,
        part: PartFile,
        validator: Validator | None,
        transfer: Transfer,
        remember: Callable[[Validator], None],
    ) -> Fetched:
        """Download `url` into `part`; raise AttemptFailed (classified) or DiskError."""
        offset = _resume_offset(part.size, validator)
        prefix = await self.prefix(part, offset) if offset else None
        if offset and prefix is None:
            offset = 0
        body = self.body_class(self._files, part, offset, prefix, validator, transfer, remember)
        headers = [("User-Agent", USER_AGENT), ("Accept-Encoding", "identity")]
        if offset and validator and validator.if_range:
            headers += [("Range", f"bytes={offset}-"), ("If-Range", validator.if_range)]
        request = httpx.Request("GET", url, headers=headers, extensions={SINK: body})
        try:
            response = await self._transport.handle_async_request(request)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await body.keep()
            raise _classified(exc, self._dest, part.path) from None
        if body.writer is None:
            return await self._without_body(response, body)
        return await body.verified()

    async def prefix(self, part: PartFile, offset: int) -> tuple[bytes, hashlib._Hash] | None:
        """The first bytes and running MD5 of what `part` holds before `offset`."""
        return await anyio.to_thread.run_sync(read_digest, part.fd, offset)

    async def _without_body(self, response: httpx.Response, body: _PartBody) -> Fetched:
        """A response whose body we did not take: an error, or a 416 for a complete `.part`."""
        status = response.status_code
        if status == 416 and body.offset and _complete(response, body.offset):
            return await body.already_complete()
        if status == 416 and body.offset:
            raise AttemptFailed(
                Kind.NETWORK, "HTTP 416 for the resume range; starting over", restart=True
            )
        phrase = _phrase(status, response.reason_phrase)
        raise AttemptFailed(
            kind_of_status(status),
            f"HTTP {status} {phrase}{_error_detail(response.content)}",
            retry_after=parse_retry_after(response.headers.get("retry-after"), self._clock()),
        )


@dataclass(frozen=True, slots=True)
class _Files:
    """Where bodies go: the writer threads, the destination, the size limit."""

    writer: DiskWriter
    dest: Destination
    max_file_size: int
    limits: RunLimits | None


class _PartBody:
    """The transport's sink for one attempt: decides on the response, feeds the writer."""

    def __init__(
        self,
        files: _Files,
        part: PartFile,
        offset: int,
        prefix: tuple[bytes, hashlib._Hash] | None,
        validator: Validator | None,
        transfer: Transfer,
        remember: Callable[[Validator], None],
    ) -> None:
        self._files = files
        self.part = part
        self.offset = offset
        self._prefix = prefix
        self._validator = validator
        self._transfer = transfer
        self._remember = remember
        self.writer: PartWriter | None = None
        self._length: int | None = None
        self._found: Validator | None = None
        self._limit = files.max_file_size
        self._resume: Callable[[], None] = _nothing
        self._paid = False  # this chunk passed the bandwidth gate, the writer refused it

    # -- the sink protocol (event loop thread) --------------------------------------------

    def start(self, response: httpx.Response, resume: Callable[[], None]) -> bool:
        status = response.status_code
        self._transfer.status = status
        if status not in (200, 206) or (status == 206 and not self.offset):
            return False
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise AttemptFailed(
                Kind.INVALID,
                f"the server sent a Content-Encoding: {encoding} body; "
                "tfbulk asks for identity and stores the bytes as they are",
                restart=True,
            )
        length = _content_length(response)
        start = self._continues_at(response) if status == 206 else 0
        total = start + length if length is not None else None
        if total is not None and total > self._limit:
            raise _too_large(f"the server announced {total:,} bytes")
        if self._files.limits is not None:
            self._files.limits.disk.check(self._transfer.segment_id, length)
        found = Validator(
            response.headers.get("etag"), response.headers.get("last-modified"), total
        )
        self._length, self._found, self.offset = length, found, start
        self._remember(found)
        self._transfer.size, self._transfer.resumed_from = total, start
        self._transfer.received = start
        self._resume = resume
        self.writer = self._open(start, resume)
        return True

    def write(self, chunk: bytes) -> bool:
        assert self.writer is not None
        received = self._transfer.received - self.offset + len(chunk)
        if self._length is not None and received > self._length:
            raise AttemptFailed(
                Kind.INVALID,
                f"the body is longer than its Content-Length ({self._length:,} bytes)",
                restart=True,
            )
        if self.offset + received > self._limit:
            raise _too_large(f"{self.offset + received:,} bytes received so far")
        limits = self._files.limits
        if limits is not None and not self._paid and not limits.take(len(chunk), self._resume):
            return False
        self._paid = True
        if not self.writer.take(chunk):
            return False
        self._paid = False
        self._transfer.received = self.offset + received
        return True

    # -- after the transfer ----------------------------------------------------------------

    async def verified(self) -> Fetched:
        """Wait for the last batch to be written, then check length, container and MD5."""
        assert self.writer is not None and self._found is not None
        writer = self.writer
        try:
            await writer.finish()
        except OSError as exc:
            raise _classified(exc, self._files.dest, self.part.path) from None
        size = self._transfer.received
        received = size - self.offset
        try:
            head = self._prefix[0] if self._prefix else writer.head
            check_body(head, size, self._found.size, writer.md5, self._found.etag)
        except VerifyError as exc:
            raise AttemptFailed(Kind.INVALID, f"verification failed: {exc}", restart=True) from None
        self.part.size = size
        return Fetched(size, writer.md5, self._found.etag, received)

    async def already_complete(self) -> Fetched:
        """The `.part` holds the whole object (416 for `bytes=<size>-`): verify it as is."""
        validator = self._validator or Validator(None, None, None)
        assert self._prefix is not None
        head, digest = self._prefix
        try:
            check_body(head, self.offset, validator.size, digest.hexdigest(), validator.etag)
        except VerifyError as exc:
            raise AttemptFailed(Kind.INVALID, f"verification failed: {exc}", restart=True) from None
        return Fetched(self.offset, digest.hexdigest(), validator.etag, 0)

    async def keep(self) -> None:
        """After a failed or cancelled attempt: what did arrive stays, for a resume."""
        if self.writer is not None:
            with contextlib.suppress(OSError):
                await self.writer.finish()
            self.part.size = self._transfer.received

    # -- helpers -----------------------------------------------------------------------------

    def _continues_at(self, response: httpx.Response) -> int:
        """The 206's start, if it continues this `.part` of the same object; else start over."""
        header = response.headers.get("content-range", "")
        match = _CONTENT_RANGE.fullmatch(header)
        expected = self._validator.size if self._validator else None
        total = int(match.group(3)) if match and match.group(3) != "*" else None
        if not match or int(match.group(1)) != self.offset or (expected and total != expected):
            raise AttemptFailed(
                Kind.NETWORK,
                f"resume refused: Content-Range {header!r} does not continue at byte {self.offset}",
                restart=True,
            )
        found = Validator(response.headers.get("etag"), response.headers.get("last-modified"), None)
        if self._validator is None or not self._validator.same_object(found):
            raise AttemptFailed(
                Kind.NETWORK,
                "resume refused: the object changed since the .part was started "
                f"(ETag {_shown(self._validator)} → {found.etag or 'none'}); starting over",
                restart=True,
            )
        return self.offset

    def _open(self, offset: int, resume: Callable[[], None]) -> PartWriter:
        """Position the `.part` for this body: continue at `offset`, or start it over."""
        if offset and self._prefix:
            self.part.continue_at(offset)
            digest = self._prefix[1]
        else:
            if self.part.size:
                self.part.start_over()
            digest = hashlib.md5(usedforsecurity=False)
            self._prefix = None
        return self._files.writer.open(self.part, offset, digest, resume)


Fetcher.body_class = _PartBody


def _nothing() -> None:
    return None


def open_transport(
    tuning: Tuning, network: Network, receive_buffer: int | None = None
) -> CurlTransport:
    """The transport of a run (and of `doctor --probe`, so a probe sees what a run will);
    `receive_buffer` is smaller under a bandwidth limit."""
    return CurlTransport(
        CurlOptions(
            receive_buffer=receive_buffer or RECEIVE_BUFFER,
            http_version=network.http_version,
            ca_bundle=network.ca_bundle,
            max_connections=tuning.concurrency,
            follow_redirects=True,
            read_timeout=tuning.read_timeout,
            connect_timeout=tuning.connect_timeout,
        )
    )


def _resume_offset(size: int, validator: Validator | None) -> int:
    """Bytes already in the `.part` that may be resumed; one with no validator is stale."""
    if not size or validator is None or not validator.if_range:
        return 0
    if validator.size is None or size <= validator.size:
        return size
    return 0


def _classified(exc: BaseException, dest: Destination, part: Path) -> BaseException:
    """Transport and file errors as the AttemptFailed (or DiskError) the engine decides on."""
    match exc:
        case AttemptFailed():
            return exc
        case OSError():
            dest.raise_if_disk(exc, part)
            return AttemptFailed(Kind.CLIENT, f"cannot write {part}: {exc.strerror}")
        case httpx.ConnectTimeout():
            return AttemptFailed(Kind.NETWORK, "timeout: could not connect")
        case httpx.TimeoutException():
            return AttemptFailed(Kind.NETWORK, "timeout: no data received for the read timeout")
        case httpx.TooManyRedirects():
            return AttemptFailed(Kind.CLIENT, "too many redirects", permanent=True)
        case httpx.UnsupportedProtocol():
            return AttemptFailed(
                Kind.CLIENT, f"refused: {redact(str(exc))} (http and https only)", permanent=True
            )
        case httpx.TransportError():
            return AttemptFailed(
                Kind.NETWORK, f"connection error: {redact(str(exc)) or type(exc).__name__}"
            )
    return exc


def _too_large(detail: str) -> AttemptFailed:
    return AttemptFailed(
        Kind.INVALID,
        f"larger than --max-file-size ({detail}); raise --max-file-size if it is expected",
        restart=True,
        permanent=True,
    )


def _complete(response: httpx.Response, offset: int) -> bool:
    match = _UNSATISFIED_RANGE.fullmatch(response.headers.get("content-range", ""))
    return match is not None and int(match.group(1)) == offset


def _shown(validator: Validator | None) -> str:
    return (validator.etag if validator else None) or "none"


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


def _error_detail(body: bytes) -> str:
    """CloudFront/S3 put a <Message> in their XML error bodies; quote it (redacted)."""
    match = _XML_MESSAGE.search(body)
    return f": {redact(match.group(1).decode(errors='replace'))}" if match else ""
