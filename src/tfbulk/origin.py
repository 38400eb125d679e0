"""A local origin that behaves like CloudFront in front of a video bucket.

It checks CloudFront signatures with the public keys (RSA or ECDSA, SHA-1 or SHA-256,
canned or custom policies, with wildcards, DateGreaterThan and IpAddress against the
connection's peer address), or S3 SigV4 presigned URLs with the secret keys (403 with the
reason in an S3-style XML error on a bad or expired one),
serves deterministic video-like bodies (or real files) with ETag, Last-Modified, Range and
If-Range, throttles per connection, injects faults per path, and logs every request.
The test suite, `tfbulk demo` and `tfbulk origin` all run this same server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import re
import signal
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote

import h11

from tfbulk.signing.cloudfront import PublicKey, verify_cloudfront
from tfbulk.signing.s3 import Refusal, verify_presigned

BLOCK = 64 * 1024
MD5_ETAG_LIMIT = 512 << 20  # bigger bodies get multipart-style ETags, as S3 gives them
SEND_CHUNK = 64 * 1024
GATE_LIMIT = 60.0
LAST_MODIFIED = formatdate(1_700_000_000, usegmt=True)
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


# -- content ---------------------------------------------------------------------------


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


# -- faults -------------------------------------------------------------------------


@dataclass
class Fault:
    """Misbehaviour for one path, for its first `times` requests (0 = every request).

    status: answer with this HTTP status instead of the body (with `retry_after` if set,
    or with an HTTP-date `retry_date_in` seconds after the moment of refusal);
    html: answer 200 with an HTML error page; drop_after: send that many body bytes,
    then cut the connection; delay: wait that long before answering; wrong_md5: serve an
    ETag that does not match the body; stall: stop sending mid-body for that long;
    change_after: publish a new version of the object once this response is sent;
    gate: hold the body half-way until this event is set (tests synchronise on it).
    """

    status: int | None = None
    times: int = 1
    retry_after: str | None = None
    retry_date_in: float | None = None
    html: bool = False
    drop_after: int | None = None
    delay: float = 0.0
    wrong_md5: bool = False
    stall: float = 0.0
    change_after: bool = False
    gate: threading.Event | None = field(default=None, compare=False)
    used: int = field(default=0, compare=False)

    def applies(self) -> bool:
        return self.times == 0 or self.used < self.times

    def retry_after_header(self, now: float) -> list[tuple[str, str]]:
        """The Retry-After header; a date is taken from `now` so a slow client can't outrun it."""
        if self.retry_date_in is not None:
            return [("Retry-After", formatdate(now + self.retry_date_in, usegmt=True))]
        return [("Retry-After", self.retry_after)] if self.retry_after else []


# -- the request log --------------------------------------------------------------------


@dataclass
class RequestRecord:
    started: float
    method: str
    path: str
    range: str | None
    if_range: str | None
    query: str = ""
    client: str = ""
    status: int = 0
    sent: int = 0
    reason: str = ""
    concurrent: int = 0
    ended: float = 0.0


# -- the server ---------------------------------------------------------------------


class Origin:
    """The server; run it in a background thread (`with Origin(...) as o`) or `serve()`."""

    def __init__(
        self,
        *,
        content: SyntheticContent | DirectoryContent | None = None,
        public_keys: dict[str, PublicKey] | None = None,
        speed: float | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        s3_credentials: dict[str, str] | None = None,
        s3_region: str | None = None,
    ) -> None:
        self.content = content or SyntheticContent()
        self.public_keys = public_keys
        self.s3_credentials = s3_credentials  # access key ID -> secret key
        self.s3_region = s3_region
        self.speed = speed
        self.host, self.port = host, port
        self.clock = clock
        self.faults: dict[str, list[Fault]] = {}
        self.log: list[RequestRecord] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def add_fault(self, path: str, fault: Fault) -> None:
        with self._lock:
            self.faults.setdefault(path, []).append(fault)

    def requests_for(self, path: str) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self.log if r.path == path]

    def bytes_served(self) -> int:
        with self._lock:
            return sum(r.sent for r in self.log)

    # -- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> Origin:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Serve from a background thread; returns once the port is bound."""
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait()

    def stop(self) -> None:
        if self._loop and self._thread:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._server = loop.run_until_complete(self._bind())
        ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    async def serve(
        self,
        started: Callable[[Origin], None] | None = None,
        stop_signals: tuple[signal.Signals, ...] = (),
    ) -> None:
        """Serve in the current event loop until cancelled or one of `stop_signals` arrives.

        The handlers are explicit because a process started in the background by a
        non-interactive shell inherits SIGINT ignored, and then Python never raises
        KeyboardInterrupt: `tfbulk origin &` would not stop on `kill -INT`.
        """
        server = await self._bind()
        stop = asyncio.Event()
        for signum in stop_signals:
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        if started:
            started(self)
        async with server:
            await stop.wait()

    async def _bind(self) -> asyncio.base_events.Server:
        server = await asyncio.start_server(self._connection, self.host, self.port, backlog=512)
        self.port = server.sockets[0].getsockname()[1]
        return server

    # -- HTTP -----------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        client = writer.get_extra_info("peername")[0]
        try:
            while True:
                request = await _next_request(conn, reader)
                if request is None:
                    break
                keep = await self._respond(conn, writer, request, client)
                if not keep or conn.our_state is h11.MUST_CLOSE:
                    break
                conn.start_next_cycle()
        except (ConnectionError, h11.RemoteProtocolError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            return  # the server is shutting down; nothing to report
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _respond(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, request: h11.Request, client: str
    ) -> bool:
        target = request.target.decode("latin-1")
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in request.headers}
        path, _, query = target.partition("?")
        record = RequestRecord(
            self.clock(),
            request.method.decode(),
            path,
            headers.get("range"),
            headers.get("if-range"),
            query,
            client,
        )
        with self._lock:
            self.log.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            record.concurrent = self.in_flight
        try:
            return await self._answer(conn, writer, record, target, headers)
        finally:
            with self._lock:
                self.in_flight -= 1
            record.ended = self.clock()

    async def _answer(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        record: RequestRecord,
        target: str,
        headers: dict[str, str],
    ) -> bool:
        fault = self._take_fault(record.path)
        if fault and fault.delay:
            await asyncio.sleep(fault.delay)
        if record.method not in ("GET", "HEAD"):
            return await self._simple(conn, writer, record, 405, "method not allowed")
        refusal = self._check_signature(record, target, headers)
        if refusal:
            return await self._simple(
                conn, writer, record, refusal.status, refusal.message, code=refusal.code
            )
        if fault and fault.status:
            extra = fault.retry_after_header(self.clock())
            return await self._simple(conn, writer, record, fault.status, "injected fault", extra)
        if fault and fault.html:
            page = b"<!DOCTYPE html><html><body>Service temporarily unavailable</body></html>"
            page = page.ljust(2048, b" ")
            return await self._send(
                conn, writer, record, 200, [("Content-Type", "text/html")], page
            )
        size = self.content.size(record.path)
        if size is None:
            return await self._simple(conn, writer, record, 404, "no such object")
        return await self._object(conn, writer, record, headers, size, fault)

    def _check_signature(
        self, record: RequestRecord, target: str, headers: dict[str, str]
    ) -> Refusal | None:
        """S3 checks SigV4 query signatures, CloudFront its signed URLs; this origin may do
        either or both (then the URL's parameters say which one it is)."""
        url = f"http://{headers.get('host', f'{self.host}:{self.port}')}{target}"
        now = self.clock()
        if self.s3_credentials is not None and (
            "X-Amz-Algorithm=" in record.query or self.public_keys is None
        ):
            return verify_presigned(record.method, url, self.s3_credentials, now, self.s3_region)
        if self.public_keys is None:
            return None
        reason = verify_cloudfront(url, self.public_keys, now, record.client)
        return Refusal("AccessDenied", reason) if reason else None

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults.get(path, []):
                if fault.applies():
                    fault.used += 1
                    return fault
        return None

    async def _object(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        record: RequestRecord,
        headers: dict[str, str],
        size: int,
        fault: Fault | None,
    ) -> bool:
        etag = self.content.etag(record.path)
        if fault and fault.wrong_md5:
            etag = f'"{hashlib.md5(etag.encode(), usedforsecurity=False).hexdigest()}"'
        common = [("ETag", etag), ("Last-Modified", LAST_MODIFIED), ("Accept-Ranges", "bytes")]
        start, end, status = 0, size, 200
        wanted = _RANGE.fullmatch(headers.get("range", ""))
        if_range = headers.get("if-range")
        if wanted and (if_range is None or if_range in (etag, LAST_MODIFIED)):
            start = int(wanted.group(1))
            end = min(size, int(wanted.group(2)) + 1) if wanted.group(2) else size
            if start >= size:
                extra = [("Content-Range", f"bytes */{size}")]
                return await self._simple(conn, writer, record, 416, "range not satisfiable", extra)
            status = 206
            common.append(("Content-Range", f"bytes {start}-{end - 1}/{size}"))
        common += [("Content-Type", "video/mp4"), ("Content-Length", str(end - start))]
        record.status = status
        response = h11.Response(
            status_code=status, headers=_h(common, self.clock()), reason=_reason(status)
        )
        await _write(writer, conn.send(response))
        if record.method == "HEAD":
            await _write(writer, conn.send(h11.EndOfMessage()))
            return True
        return await self._body(conn, writer, record, start, end, fault)

    async def _body(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        record: RequestRecord,
        start: int,
        end: int,
        fault: Fault | None,
    ) -> bool:
        chunk = SEND_CHUNK if not self.speed else max(1024, int(self.speed / 20))
        cut = start + fault.drop_after if fault and fault.drop_after is not None else None
        held = fault is not None and bool(fault.stall or fault.gate)
        middle = start + (end - start) // 2  # a stall holds the body here, whatever the chunk
        position = start
        while position < end:
            stop = min(end, position + chunk, cut if cut is not None else end)
            if held and position < middle:
                stop = min(stop, middle)
            if stop <= position:
                break
            data = self.content.read(record.path, position, stop)
            await _write(writer, conn.send(h11.Data(data=data)))
            record.sent += len(data)
            position = stop
            if fault and held and position >= middle:
                await _hold(fault)
                fault = None
            if self.speed:
                await asyncio.sleep(len(data) / self.speed)
        if fault and fault.change_after and isinstance(self.content, SyntheticContent):
            self.content.change(record.path)
        if cut is not None and position < end:
            record.reason = "connection dropped (injected)"
            writer.transport.abort()
            return False
        await _write(writer, conn.send(h11.EndOfMessage()))
        return True

    async def _simple(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        record: RequestRecord,
        status: int,
        reason: str,
        extra: list[tuple[str, str]] | None = None,
        code: str | None = None,
    ) -> bool:
        code = code or ("AccessDenied" if status == 403 else "Error")
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Error><Code>{code}</Code><Message>{reason}</Message></Error>"
        )
        record.reason = reason
        headers = [("Content-Type", "text/xml"), *(extra or [])]
        return await self._send(conn, writer, record, status, headers, body.encode())

    async def _send(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        record: RequestRecord,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> bool:
        record.status = status
        headers = [*headers, ("Content-Length", str(len(body)))]
        response = h11.Response(
            status_code=status, headers=_h(headers, self.clock()), reason=_reason(status)
        )
        await _write(writer, conn.send(response))
        if record.method != "HEAD":
            await _write(writer, conn.send(h11.Data(data=body)))
            record.sent += len(body)
        await _write(writer, conn.send(h11.EndOfMessage()))
        return True


async def _hold(fault: Fault) -> None:
    """Stall for `fault.stall` seconds, or until its gate opens (at most a minute)."""
    if fault.gate is not None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, fault.gate.wait, GATE_LIMIT)
    else:
        await asyncio.sleep(fault.stall)


async def _next_request(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Request | None:
    """Read until a full request head (or EOF); skip any request body."""
    request = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(65536)
            conn.receive_data(data)
            if not data and conn.their_state is h11.IDLE:
                return None
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.EndOfMessage):
            return request
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def _write(writer: asyncio.StreamWriter, data: bytes | None) -> None:
    if data:
        writer.write(data)
        await writer.drain()


def _reason(status: int) -> bytes:
    return HTTPStatus(status).phrase.encode()


def _h(headers: list[tuple[str, str]], now: float) -> list[tuple[bytes, bytes]]:
    """Header bytes, with the Server and Date (from the origin's clock) every response has."""
    standard = [("Server", "tfbulk-origin"), ("Date", formatdate(now, usegmt=True))]
    return [(k.encode(), v.encode("latin-1")) for k, v in [*standard, *headers]]
