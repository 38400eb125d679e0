"""httpx's transport interface over libcurl's multi interface, driven by the event loop.

httpx is the HTTP model the rest of tfbulk speaks (requests, responses, exceptions); libcurl
moves the bytes. Measured on this workload, libcurl through pycurl spends about a third of
the CPU per file of the aiohttp transport it replaced (docs/performance.md).

The multi handle's sockets and timers are registered with the running asyncio loop, so a
transfer costs no thread hand-off: libcurl reads a socket when the loop says it is ready
and calls back into Python with each piece of body (at most 16 KiB). Two ways to receive
a body:

- a plain `httpx.Response` whose stream yields the pieces (doctor's probes, tests), with
  back-pressure: the transfer pauses while the reader is behind;
- a `BodySink` in the request's `tfbulk.sink` extension: the pieces go straight to it as
  they arrive and the response is returned once the transfer has ended. This is the
  download path: no per-piece task switch, no stream object.

The request target goes on the wire byte for byte as the httpx URL holds it (libcurl's
own URL parser would rewrite escapes): that is what a CDN checks a signature against, and
`tfbulk.pipeline.urls.wire_url` says what httpx keeps of a URL.

Redirects are followed here when asked to (`follow_redirects`), not by libcurl, so each hop
is requested exactly as its Location says: GET stays GET with no body, at most
`max_redirects` hops, http and https only, and no credentials of one host go to another.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.request import (  # type: ignore[attr-defined]  # typeshed omits the undocumented helper
    getproxies,
    proxy_bypass_environment,
)

import httpx
import pycurl

SINK = "tfbulk.sink"
UPLOAD = "tfbulk.upload"  # a request body as a buffer or a FileBody, sent without a copy
HTTP_VERSIONS = {
    "1.1": pycurl.CURL_HTTP_VERSION_1_1,
    "2": pycurl.CURL_HTTP_VERSION_2TLS,  # HTTP/2 over TLS when offered; HTTP/1.1 otherwise
    "3": pycurl.CURL_HTTP_VERSION_3,  # HTTP/3 when it connects, else the best of TCP
}
MAX_REDIRECTS = 10
RECEIVE_BUFFER = 128 * 1024  # libcurl reads sockets this much at a time (default 16 KiB)
DECLINED_BODY_LIMIT = 64 * 1024  # an error page is read this far, then the transfer ends
STREAM_HIGH_WATER = 1 << 20  # a streamed response pauses with this much unread
_WEB = pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS
_DROPPED_HEADERS = frozenset({b"host", b"content-length", b"transfer-encoding"})
_CREDENTIALS = ("authorization", "cookie", "proxy-authorization")
_WITH_BODY = frozenset({"PUT", "POST", "DELETE"})


class BodySink(Protocol):
    """Receives a response body on the event loop thread, piece by piece.

    `start` sees the final response (after any redirects) before its first byte and says
    whether it takes the body; a declined body (an error page) is read into the response
    instead. `write` returns False to leave a piece unread: the transfer pauses and the
    same piece comes again once `resume` (given to `start`) is called on the loop thread.
    Whatever `start` or `write` raises ends the transfer and is raised to the caller.
    """

    def start(self, response: httpx.Response, resume: Callable[[], None]) -> bool: ...

    def write(self, chunk: bytes) -> bool: ...


@dataclass(frozen=True, slots=True)
class FileBody:
    """A request body read from an open file as libcurl sends it: the first `size` bytes
    of `fd` (an S3 part spooled to disk), never all in memory at once."""

    fd: int
    size: int


@dataclass(frozen=True)
class CurlOptions:
    """How every transfer of one transport connects."""

    http_version: str = "2"
    ca_bundle: Path | None = None
    max_connections: int = 10
    follow_redirects: bool = False
    max_redirects: int = MAX_REDIRECTS
    read_timeout: float | None = 60.0
    connect_timeout: float | None = 30.0
    receive_buffer: int = RECEIVE_BUFFER


class CurlTransport(httpx.AsyncBaseTransport):
    """One libcurl multi handle: a connection pool shared by every request sent through it."""

    def __init__(self, options: CurlOptions | None = None) -> None:
        self.options = options or CurlOptions()
        self._proxies = _proxies_from_environment()
        self._ca = _ca_locations(self.options.ca_bundle)
        self._driver: _Driver | None = None
        self._idle: list[pycurl.Curl] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        hops = 0
        while True:
            response = await self._send(request)
            location = _location(response) if self.options.follow_redirects else None
            if location is None:
                return response
            await response.aclose()
            hops += 1
            if hops > self.options.max_redirects:
                raise httpx.TooManyRedirects("too many redirects", request=request)
            request = _redirected(request, location)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        driver = self._driver or self._start()
        exchange = _Exchange(request, self._handle(), request.extensions.get(SINK))
        self._prepare(exchange)
        driver.add(exchange)
        try:
            return await exchange.response()
        except BaseException:
            driver.abandon(exchange)
            raise

    async def aclose(self) -> None:
        if self._driver is not None:
            self._driver.close()
            self._driver = None
        for handle in self._idle:
            handle.close()
        self._idle.clear()

    def _start(self) -> _Driver:
        self._driver = _Driver(asyncio.get_running_loop(), self.options, self._release)
        return self._driver

    def _handle(self) -> pycurl.Curl:
        if self._idle:
            return self._idle.pop()
        handle = pycurl.Curl()
        handle.setopt(pycurl.NOSIGNAL, 1)
        handle.setopt(pycurl.PROTOCOLS, _WEB)
        handle.setopt(pycurl.HTTP_VERSION, HTTP_VERSIONS[self.options.http_version])
        handle.setopt(pycurl.TCP_KEEPALIVE, 1)
        handle.setopt(pycurl.BUFFERSIZE, self.options.receive_buffer)
        cafile, capath = self._ca
        if cafile:
            handle.setopt(pycurl.CAINFO, cafile)
        if capath:
            handle.setopt(pycurl.CAPATH, capath)
        return handle

    def _prepare(self, exchange: _Exchange) -> None:
        """Per-request options; every one is set each time, so a reused handle keeps nothing."""
        request, handle = exchange.request, exchange.handle
        url = str(request.url)
        proxy = self._proxy_for(request.url)
        handle.setopt(pycurl.URL, url)
        # The target as httpx holds it, verbatim; absolute-form through a plain HTTP proxy.
        absolute = proxy and request.url.scheme == "http"
        handle.setopt(pycurl.REQUEST_TARGET, url if absolute else request.url.raw_path.decode())
        handle.setopt(pycurl.HTTPHEADER, _header_lines(request))
        handle.setopt(pycurl.PROXY, proxy)
        # Wait to multiplex rather than open another connection, where multiplexing can
        # happen at all: over cleartext libcurl keeps the waiting transfer parked until
        # the first one ends, so one slow body would hold every other request back.
        multiplex = self.options.http_version != "1.1" and request.url.scheme == "https"
        handle.setopt(pycurl.PIPEWAIT, int(multiplex))
        handle.setopt(pycurl.HEADERFUNCTION, exchange.on_header)
        handle.setopt(pycurl.WRITEFUNCTION, exchange.on_body)
        timeouts = request.extensions.get("timeout", {})
        connect = timeouts.get("connect", self.options.connect_timeout)
        handle.setopt(pycurl.CONNECTTIMEOUT_MS, int((connect or 0) * 1000))
        exchange.read_timeout = timeouts.get("read", self.options.read_timeout)
        _set_method(handle, request)

    def _proxy_for(self, url: httpx.URL) -> str:
        """The proxy for `url` ("" for none): HTTP(S)_PROXY unless NO_PROXY names the host."""
        proxy = self._proxies.get(url.scheme, "")
        if proxy and proxy_bypass_environment(url.host, {"no": self._proxies.get("no", "")}):
            return ""
        return proxy

    def _release(self, handle: pycurl.Curl) -> None:
        """Back to the idle list, without the callbacks that would keep the exchange alive."""
        handle.setopt(pycurl.HEADERFUNCTION, _ignore)
        handle.setopt(pycurl.WRITEFUNCTION, _ignore)
        handle.setopt(pycurl.READFUNCTION, _no_body)
        self._idle.append(handle)


def _ignore(_data: bytes) -> None:
    return None


def _no_body(_size: int) -> bytes:
    return b""


def _location(response: httpx.Response) -> str | None:
    if response.status_code in (301, 302, 303, 307, 308):
        return response.headers.get("location") or None
    return None


def _redirected(request: httpx.Request, location: str) -> httpx.Request:
    """The next hop: a GET (HEAD stays HEAD) of the Location as given, with no credentials
    if it leaves the host, and the same extensions (the sink follows the body)."""
    try:
        url = httpx.URL(location) if "://" in location else request.url.join(location)
    except httpx.InvalidURL as exc:
        raise httpx.UnsupportedProtocol(
            f"redirect to an invalid URL: {exc}", request=request
        ) from None
    if url.scheme not in ("http", "https"):
        raise httpx.UnsupportedProtocol(
            f"redirect to a {url.scheme or 'relative'} URL refused", request=request
        )
    headers = httpx.Headers(request.headers)
    if (url.scheme, url.host, url.port) != (request.url.scheme, request.url.host, request.url.port):
        for name in _CREDENTIALS:
            headers.pop(name, None)
    method = "HEAD" if request.method == "HEAD" else "GET"
    return httpx.Request(method, url, headers=headers, extensions=request.extensions)


def _set_method(handle: pycurl.Curl, request: httpx.Request) -> None:
    """GET and HEAD for downloads; PUT, POST and DELETE (a body given whole, as `content`)
    for the S3 destination's requests. Every call resets what a reused handle had."""
    handle.setopt(pycurl.HTTPGET, 1)
    handle.unsetopt(pycurl.CUSTOMREQUEST)
    method = request.method
    if method == "GET":
        return
    if method == "HEAD":
        handle.setopt(pycurl.NOBODY, 1)
        return
    if method not in _WITH_BODY:
        raise httpx.UnsupportedProtocol(
            f"the libcurl transport sends GET, HEAD, PUT, POST and DELETE, not {method}",
            request=request,
        )
    given = request.extensions.get(UPLOAD)
    handle.setopt(pycurl.UPLOAD, 1)
    if isinstance(given, FileBody):
        handle.setopt(pycurl.INFILESIZE_LARGE, given.size)
        handle.setopt(pycurl.READFUNCTION, _file_reader(given))
    else:
        body = memoryview(given if given is not None else request.content)
        handle.setopt(pycurl.INFILESIZE_LARGE, len(body))
        handle.setopt(pycurl.READFUNCTION, _reader(body))
    if method != "PUT":
        handle.setopt(pycurl.CUSTOMREQUEST, method)


def _reader(body: memoryview) -> Callable[[int], bytes]:
    """libcurl's READFUNCTION over `body`: piece after piece, then b"" (the end)."""
    position = 0

    def read(size: int) -> bytes:
        nonlocal position
        piece = body[position : position + size]
        position += len(piece)
        return piece.tobytes()

    return read


def _file_reader(body: FileBody) -> Callable[[int], bytes]:
    """libcurl's READFUNCTION over a file: what it asks for, read from the page cache."""
    position = 0

    def read(size: int) -> bytes:
        nonlocal position
        piece = os.pread(body.fd, min(size, body.size - position), position)
        position += len(piece)
        return piece

    return read


def _header_lines(request: httpx.Request) -> list[str]:
    """The request's headers as libcurl takes them; Host and framing are libcurl's to set,
    so that a redirect to another host never carries this one's Host."""
    lines = [
        f"{name.decode('latin-1')}: {value.decode('latin-1')}"
        for name, value in request.headers.raw
        if name.lower() not in _DROPPED_HEADERS
    ]
    # An upload goes at once: no `Expect: 100-continue` round trip before each part.
    return [*lines, "Expect:"] if request.method in _WITH_BODY else lines


def _proxies_from_environment() -> dict[str, str]:
    """HTTP(S)_PROXY and NO_PROXY, read once, as httpx's own transport honours them.

    An empty PROXY tells libcurl to use no proxy at all, so it never looks up the
    environment behind our back (it would ignore an upper-case HTTP_PROXY, httpx does not).
    """
    found = getproxies()
    proxies: dict[str, str] = {s: found[s] for s in ("http", "https") if s in found}
    if "all" in found:
        for scheme in ("http", "https"):
            proxies.setdefault(scheme, found["all"])
    if "no" in found:
        proxies["no"] = found["no"]
    return proxies


def _ca_locations(bundle: Path | None) -> tuple[str | None, str | None]:
    """--ca-bundle, else SSL_CERT_FILE/SSL_CERT_DIR, else certifi's bundle (as httpx does)."""
    if bundle is not None:
        return str(bundle), None
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return cafile, capath
    import certifi

    return certifi.where(), None


class _Exchange:
    """One request in flight: its handle, what has arrived, and who waits for it."""

    __slots__ = (
        "_declined",
        "_in_trailers",
        "_resume",
        "_status",
        "_stream",
        "abort",
        "active_at",
        "connected",
        "created",
        "done",
        "error",
        "handle",
        "headers",
        "paused",
        "read_timeout",
        "request",
        "response_ready",
        "result",
        "sink",
    )

    def __init__(self, request: httpx.Request, handle: pycurl.Curl, sink: BodySink | None):
        loop = asyncio.get_running_loop()
        self.request = request
        self.handle = handle
        self.sink = sink
        self.headers: list[tuple[bytes, bytes]] = []
        self._status = b""
        self._in_trailers = False
        self._declined: bytearray | None = None
        self._stream: _Stream | None = None
        self._resume: Callable[[], None] | None = None
        self.result: httpx.Response | None = None
        self.error: BaseException | None = None
        self.done: asyncio.Future[None] = loop.create_future()
        self.response_ready: asyncio.Future[None] = loop.create_future()
        self.created = self.active_at = time.monotonic()
        self.abort: Callable[[], None] = _nothing
        self.read_timeout: float | None = None
        self.connected = False
        self.paused = False

    async def response(self) -> httpx.Response:
        """The response: once the body has gone to the sink, or once headers are in."""
        await (self.done if self.sink is not None else self.response_ready)
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    # -- libcurl's callbacks (on the loop thread, inside socket_action) ------------------

    def on_header(self, line: bytes) -> None:
        self.active_at = time.monotonic()
        if self._in_trailers:
            return
        if line.startswith(b"HTTP/"):
            self._status, self.headers = line, []  # a new response: 1xx or a redirect hop
        elif line[:1] in (b" ", b"\t") and self.headers:
            name, value = self.headers[-1]
            self.headers[-1] = (name, value + b" " + line.strip())
        else:
            name, sep, value = line.partition(b":")
            if sep:
                self.headers.append((name.strip(), value.strip()))

    def on_body(self, chunk: bytes) -> int | None:
        self.active_at = time.monotonic()
        try:
            if self.result is None and not self._begin():
                return 0
            if self._declined is not None:
                self._declined += chunk
                return None if len(self._declined) < DECLINED_BODY_LIMIT else 0
            if self._stream is not None:
                return self._stream.feed(chunk)
            assert self.sink is not None
            if self.sink.write(chunk):
                return None
            self.paused = True
            return pycurl.WRITEFUNC_PAUSE
        except BaseException as exc:  # raised to the caller once libcurl lets go
            self.error = self.error or exc
            return 0

    def _begin(self) -> bool:
        """The final response's head is complete: build the Response, give the body a home."""
        self._in_trailers = True
        version, status, reason = _status_line(self._status)
        if self.sink is None:
            self._stream = _Stream(self)
        response = httpx.Response(
            status,
            headers=self.headers,
            stream=self._stream or httpx.ByteStream(b""),
            request=self.request,
            extensions={"http_version": version, "reason_phrase": reason},
        )
        self.result = response
        if self.sink is not None and not self.sink.start(response, self.resume):
            self._declined = bytearray()
        _settle(self.response_ready)
        return True

    # -- the driver's side -----------------------------------------------------------------

    def finish(self, code: int, message: str) -> None:
        """libcurl is done with this transfer (code 0: completely)."""
        declined_enough = self._declined is not None and len(self._declined) >= DECLINED_BODY_LIMIT
        if code and not declined_enough and self.error is None:
            self.error = _mapped_error(code, message, self)
        if self.error is None and self.result is None:
            _guarded(self, self._begin)
        if self.error is None and self._declined is not None and self.result is not None:
            self.result = _with_body(self.result, bytes(self._declined))
        if self._stream is not None:
            self._stream.end(self.error)
        _settle(self.response_ready)
        _settle(self.done)

    def expire(self) -> None:
        """No byte for the read timeout: libcurl is told to stop, the caller gets ReadTimeout."""
        self.error = self.error or httpx.ReadTimeout(
            "no data received for the read timeout", request=self.request
        )

    def resume(self) -> None:
        """Unpause after `write` returned False (on the loop thread)."""
        if self.paused and not self.done.done():
            self.paused = False
            self.active_at = time.monotonic()
            self.handle.pause(pycurl.PAUSE_CONT)


def _status_line(line: bytes) -> tuple[bytes, int, bytes]:
    """`HTTP/1.1 206 Partial Content` → (version, 206, reason); libcurl has checked its form
    (getinfo is not allowed inside a callback)."""
    parts = line.split(None, 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    reason = parts[2].strip() if len(parts) > 2 else b""
    return (parts[0] if parts else b"HTTP/1.1"), status, reason


def _nothing() -> None:
    return None


def _guarded(exchange: _Exchange, step: Callable[[], object]) -> None:
    """Run a sink step outside libcurl's callbacks; what it raises becomes the result."""
    try:
        step()
    except BaseException as exc:
        exchange.error = exc


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _with_body(response: httpx.Response, body: bytes) -> httpx.Response:
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        content=body,
        request=response.request,
        extensions=response.extensions,
    )


class _Stream(httpx.AsyncByteStream):
    """A response body read with `aiter_raw()`: pieces queue here; over the high-water mark
    the transfer pauses until the reader catches up."""

    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange
        self._pieces: deque[bytes] = deque()
        self._buffered = 0
        self._ended = False
        self._error: BaseException | None = None
        self._wakeup = asyncio.Event()

    def feed(self, chunk: bytes) -> int | None:
        if self._buffered >= STREAM_HIGH_WATER:
            self._exchange.paused = True
            return pycurl.WRITEFUNC_PAUSE
        self._pieces.append(chunk)
        self._buffered += len(chunk)
        self._wakeup.set()
        return None

    def end(self, error: BaseException | None) -> None:
        self._ended, self._error = True, error
        self._wakeup.set()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            while self._pieces:
                piece = self._pieces.popleft()
                self._buffered -= len(piece)
                if self._buffered < STREAM_HIGH_WATER // 2:
                    self._exchange.resume()
                yield piece
            if self._ended:
                if self._error is not None:
                    raise self._error
                return
            self._wakeup.clear()
            await self._wakeup.wait()

    async def aclose(self) -> None:
        """Closed before the end (the reader gave up): the transfer stops."""
        if not self._ended:
            self._exchange.abort()


class _Driver:
    """The multi handle on the event loop: sockets via add_reader/add_writer, one timer."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        options: CurlOptions,
        release: Callable[[pycurl.Curl], None],
    ) -> None:
        self._loop = loop
        self._release = release
        self._multi = pycurl.CurlMulti()
        self._multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        self._multi.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        self._multi.setopt(pycurl.M_MAX_TOTAL_CONNECTIONS, options.max_connections)
        self._multi.setopt(pycurl.M_MAXCONNECTS, options.max_connections)
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._active: dict[pycurl.Curl, _Exchange] = {}
        self._fds: set[int] = set()

    def add(self, exchange: _Exchange) -> None:
        self._active[exchange.handle] = exchange
        exchange.abort = lambda: self.abandon(exchange)
        self._multi.add_handle(exchange.handle)
        if self._watchdog is None:
            self._watch()

    def abandon(self, exchange: _Exchange) -> None:
        """The caller gave up (cancelled, or closed the stream): stop the transfer, if it is
        still this exchange's (its handle may already carry the next request)."""
        if self._active.get(exchange.handle) is exchange:
            self._end(exchange.handle, pycurl.E_ABORTED_BY_CALLBACK, "cancelled")

    def close(self) -> None:
        for exchange in list(self._active.values()):
            self.abandon(exchange)
        for fd in self._fds:
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)
        self._fds.clear()
        for handle in (self._timer, self._watchdog):
            if handle is not None:
                handle.cancel()
        self._multi.close()

    def _on_socket(self, what: int, fd: int, _multi: object, _data: object) -> None:
        loop = self._loop
        if what == pycurl.POLL_REMOVE:
            loop.remove_reader(fd)
            loop.remove_writer(fd)
            self._fds.discard(fd)
            return
        self._fds.add(fd)
        if what & pycurl.POLL_IN:
            loop.add_reader(fd, self._act, fd, pycurl.CSELECT_IN)
        else:
            loop.remove_reader(fd)
        if what & pycurl.POLL_OUT:
            loop.add_writer(fd, self._act, fd, pycurl.CSELECT_OUT)
        else:
            loop.remove_writer(fd)

    def _on_timer(self, milliseconds: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if milliseconds == 0:
            self._timer = self._loop.call_soon(self._act, pycurl.SOCKET_TIMEOUT, 0)
        elif milliseconds > 0:
            self._timer = self._loop.call_later(
                milliseconds / 1000, self._act, pycurl.SOCKET_TIMEOUT, 0
            )

    def _act(self, fd: int, events: int) -> None:
        if fd == pycurl.SOCKET_TIMEOUT:
            self._timer = None
        self._multi.socket_action(fd, events)
        while True:
            queued, ended, failed = self._multi.info_read()
            for handle in ended:
                self._end(handle, 0, "")
            for handle, code, message in failed:
                self._end(handle, code, message)
            if not queued:
                return

    def _end(self, handle: pycurl.Curl, code: int, message: str) -> None:
        """The one way out for a transfer: off the multi handle, result set, handle reused."""
        exchange = self._active.pop(handle, None)
        if exchange is None:
            return
        self._multi.remove_handle(handle)
        exchange.connected = bool(handle.getinfo(pycurl.PRETRANSFER_TIME))
        exchange.finish(code, message)
        self._release(handle)

    def _watch(self) -> None:
        """The read timeout: libcurl counts whole seconds only, so the loop keeps the time."""
        self._watchdog = None
        if not self._active:
            return
        now = time.monotonic()
        shortest = 1.0
        for exchange in list(self._active.values()):
            limit = exchange.read_timeout
            if limit is None or exchange.paused:
                continue
            shortest = min(shortest, limit / 4)
            sent = exchange.handle.getinfo(pycurl.PRETRANSFER_TIME)
            if sent and now - max(exchange.active_at, exchange.created + sent) > limit:
                exchange.expire()
                self._end(exchange.handle, 0, "")
        self._watchdog = self._loop.call_later(max(0.01, shortest), self._watch)


_NETWORK: dict[int, type[httpx.TransportError]] = {
    pycurl.E_COULDNT_CONNECT: httpx.ConnectError,
    pycurl.E_COULDNT_RESOLVE_HOST: httpx.ConnectError,
    pycurl.E_COULDNT_RESOLVE_PROXY: httpx.ProxyError,
    pycurl.E_SSL_CONNECT_ERROR: httpx.ConnectError,
    pycurl.E_PEER_FAILED_VERIFICATION: httpx.ConnectError,
    pycurl.E_SSL_CACERT_BADFILE: httpx.ConnectError,
    pycurl.E_UNSUPPORTED_PROTOCOL: httpx.UnsupportedProtocol,
    pycurl.E_URL_MALFORMAT: httpx.UnsupportedProtocol,
    pycurl.E_SEND_ERROR: httpx.WriteError,
    pycurl.E_RECV_ERROR: httpx.ReadError,
}


def _mapped_error(code: int, message: str, exchange: _Exchange) -> Exception:
    """libcurl's result code as the httpx exception that names the same failure."""
    request = exchange.request
    text = message or f"libcurl error {code}"
    if code == pycurl.E_TOO_MANY_REDIRECTS:
        return httpx.TooManyRedirects(text, request=request)
    if code == pycurl.E_OPERATION_TIMEDOUT:
        kind = httpx.ReadTimeout if exchange.connected else httpx.ConnectTimeout
        return kind(text, request=request)
    with contextlib.suppress(KeyError):
        return _NETWORK[code](text, request=request)
    return httpx.RemoteProtocolError(text, request=request)
