"""A transfer that fails leaves every other transfer alone, even one that reuses its handle.

`CurlTransport` keeps finished libcurl handles for reuse, so the next request may run on
the handle a failed one just gave back. Seen end to end under load as an attempt that
failed with "connection error: cancelled" without its request ever reaching the server;
here the next request is started at exactly that moment, so the case is deterministic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.hostile import HostileServer, mp4, serve
from tfbulk.pipeline.transport import SINK, CurlOptions, CurlTransport

BODY = mp4(4096, "handles")


class Refused(Exception):
    """What the sink raises: a body it will not take (as a too-large one is refused)."""


class RefusingSink:
    """Takes the response, then refuses its first piece after calling `meanwhile`."""

    def __init__(self, meanwhile: Callable[[], None]) -> None:
        self._meanwhile = meanwhile

    def start(self, _response: httpx.Response, _resume: Callable[[], None]) -> bool:
        return True

    def write(self, _chunk: bytes) -> bool:
        self._meanwhile()
        raise Refused


@pytest.fixture
def server() -> Iterator[HostileServer]:
    with HostileServer() as running:
        running.route_all(serve(BODY))
        yield running


async def get(transport: CurlTransport, url: str) -> httpx.Response:
    response = await transport.handle_async_request(httpx.Request("GET", url))
    await response.aread()
    return response


def test_a_failed_transfer_does_not_cancel_the_next_one(server: HostileServer) -> None:
    """The next request starts while the refused one is ending (inside its sink's write),
    so it is handed the refused one's handle as soon as that is released."""

    async def main() -> httpx.Response:
        transport = CurlTransport(CurlOptions(http_version="1.1"))
        following: list[asyncio.Task[httpx.Response]] = []

        def start_the_next() -> None:
            following.append(asyncio.create_task(get(transport, server.url("/next"))))

        refused = httpx.Request(
            "GET", server.url("/refused"), extensions={SINK: RefusingSink(start_the_next)}
        )
        try:
            with pytest.raises(Refused):
                await transport.handle_async_request(refused)
            return await following[0]
        finally:
            await transport.aclose()

    response = asyncio.run(main())
    assert response.status_code == 200 and response.content == BODY
    assert [r.path for r in server.log] == ["/refused", "/next"]
