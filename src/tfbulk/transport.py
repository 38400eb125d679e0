"""httpx's API over aiohttp's connection pool and C HTTP parser.

httpx stays the HTTP API the rest of tfbulk speaks (requests, responses, exceptions);
only the transport underneath changes. On loopback its default transport (httpcore + h11,
pure Python) managed about a third of aiohttp's requests per second and half its bytes
per second, and at tens of thousands of files per run that transport is the bottleneck.
See docs/performance.md for the numbers.

Two things a generic adapter gets wrong for signed URLs and for our retry policy, and this
one gets right:

- The URL reaches the server byte for byte (`encoded=True`): yarl would otherwise
  re-quote it (`%7E` becomes `~`, `%2f` becomes `%2F`), and a CDN compares the signed
  resource with the request line exactly.
- aiohttp's errors become the httpx exceptions `fetch` classifies: connect errors and
  timeouts, read timeouts, and a connection dropped mid-body stay distinguishable.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from urllib.request import getproxies

import aiohttp
import httpx
from yarl import URL

# aiohttp pauses reading a connection once this much (times two) is buffered: with the
# write batch below, what one transfer holds is the same for a 256 KiB file and a 256 MiB one.
READ_BUFSIZE = 64 * 1024

# Order matters: the first class an error is an instance of decides (specific first).
_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.ClientOSError, httpx.ReadError),
    (aiohttp.ClientError, httpx.NetworkError),
    (TimeoutError, httpx.PoolTimeout),
)


@contextlib.contextmanager
def _mapped_errors(request: httpx.Request) -> Iterator[None]:
    """Re-raise aiohttp's exceptions as the httpx ones (cancellation passes untouched)."""
    try:
        yield
    except Exception as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                message = str(exc) or type(exc).__name__
                raise target(message, request=request) from exc
        raise


class _Body(httpx.AsyncByteStream):
    """The response body as aiohttp buffers it: whole received pieces, no re-chunking."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        with _mapped_errors(self._request):
            while chunk := await content.readany():
                yield chunk

    async def aclose(self) -> None:
        """Back to the pool if the body was read to the end; otherwise the connection closes."""
        self._response.release()
        with _mapped_errors(self._request):
            await self._response.wait_for_close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (created on first use, inside the running event loop)."""

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        ssl_context: ssl.SSLContext | None = None,
        read_bufsize: int = READ_BUFSIZE,
    ) -> None:
        self._limits = limits
        self._ssl = ssl_context
        self._read_bufsize = read_bufsize
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._limits.max_connections or 0,
            limit_per_host=0,
            keepalive_timeout=self._limits.keepalive_expiry or 15.0,
            ssl=self._ssl or httpx.create_ssl_context(),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            read_bufsize=self._read_bufsize,
            cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps cookies, if any, itself
            # HTTP(S)_PROXY/NO_PROXY as httpx's own transport honours them; looking them up
            # costs ~0.3 ms a request, so only when one is set at all.
            trust_env=bool(getproxies()),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
        )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        timeout = request.extensions.get("timeout", {})
        try:
            data: bytes | httpx.AsyncByteStream | None = request.content or None
        except httpx.RequestNotRead:
            data = request.stream  # type: ignore[assignment]
        with _mapped_errors(request):
            response = await session.request(
                request.method,
                URL(str(request.url), encoded=True),
                headers=request.headers.multi_items(),
                data=data,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            )
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response, request),
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("latin-1", "replace"),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
