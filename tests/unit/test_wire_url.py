"""`wire_url(url)` is exactly the request target libcurl puts on the wire.

tfbulk signs `wire_url(url)`, and a CDN checks the signature over the request line it
receives, byte for byte: any difference between the two is a 403 for every such URL. So a
raw socket server records what `CurlTransport` sends for generated paths and queries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.hostile import HostileServer, reply
from tfbulk.pipeline.transport import CurlOptions, CurlTransport
from tfbulk.pipeline.urls import wire_url

UNRESERVED = "ABCXYZabcxyz0189-._~"
SUB_DELIMS = "!$&'()*+,;="
escape = st.builds(
    lambda high, low: f"%{high}{low}",
    st.sampled_from("0123456789abcdefABCDEF"),
    st.sampled_from("0123456789abcdefABCDEF"),
)
atom = st.one_of(st.sampled_from(UNRESERVED + SUB_DELIMS + ":@"), escape)
segment = st.lists(atom, min_size=1, max_size=6).map("".join).filter(lambda s: s not in (".", ".."))
dot = st.sampled_from([".", ".."])
query = st.lists(st.one_of(atom, st.sampled_from("/?")), min_size=1, max_size=12).map("".join)
EXAMPLES = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # no slow tracing
)


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    with HostileServer() as running:
        running.route_all(lambda _request, _count: reply(204))
        yield running


def sent_target(server: HostileServer, url: str) -> str:
    """The request target the server received for a GET of `url` through CurlTransport."""
    before = len(server.log)

    async def get() -> None:
        transport = CurlTransport(CurlOptions(http_version="1.1"))
        try:
            response = await transport.handle_async_request(httpx.Request("GET", url))
            await response.aread()
        finally:
            await transport.aclose()

    asyncio.run(get())
    (received,) = server.log[before:]
    return received.target


def check(server: HostileServer, segments: list[str], query: str | None) -> None:
    url = server.base_url + "/" + "/".join(segments) + ("" if query is None else f"?{query}")
    assert sent_target(server, url) == wire_url(url).removeprefix(server.base_url), url


@EXAMPLES
@given(segments=st.lists(segment, min_size=1, max_size=5), query=st.none() | query)
def test_the_request_target_is_wire_url(
    server: HostileServer, segments: list[str], query: str | None
) -> None:
    check(server, segments, query)


@EXAMPLES
@given(
    before=st.lists(segment, max_size=2),
    dots=st.lists(dot, min_size=1, max_size=2),
    after=st.lists(segment, min_size=1, max_size=2),
    query=st.none() | query,
)
def test_dot_segments_reach_the_wire_as_signed(
    server: HostileServer,
    before: list[str],
    dots: list[str],
    after: list[str],
    query: str | None,
) -> None:
    check(server, [*before, *dots, *after], query)
