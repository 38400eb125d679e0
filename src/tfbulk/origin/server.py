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
import re
import signal
import threading
import time
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus

import h11

from tfbulk.origin.content import DirectoryContent, SyntheticContent
from tfbulk.origin.faults import Fault, RequestRecord
from tfbulk.signing.cloudfront import PublicKey, verify_cloudfront
from tfbulk.signing.s3 import Refusal, verify_presigned

SEND_CHUNK = 64 * 1024
GATE_LIMIT = 60.0
LAST_MODIFIED = formatdate(1_700_000_000, usegmt=True)
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


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
        corrupt = fault.corrupt_at if fault else None
        position = start
        while position < end:
            stop = min(end, position + chunk, cut if cut is not None else end)
            if held and position < middle:
                stop = min(stop, middle)
            if stop <= position:
                break
            data = self.content.read(record.path, position, stop)
            if corrupt is not None and position <= corrupt < stop:
                data = _flipped(data, corrupt - position)
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


def _flipped(data: bytes, index: int) -> bytes:
    """`data` with one byte damaged (Fault.corrupt_at)."""
    return data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :]


def _h(headers: list[tuple[str, str]], now: float) -> list[tuple[bytes, bytes]]:
    """Header bytes, with the Server and Date (from the origin's clock) every response has."""
    standard = [("Server", "tfbulk-origin"), ("Date", formatdate(now, usegmt=True))]
    return [(k.encode(), v.encode("latin-1")) for k, v in [*standard, *headers]]
