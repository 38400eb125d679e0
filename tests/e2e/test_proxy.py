"""`HTTP_PROXY`/`http_proxy` and `NO_PROXY` are honoured, as httpx's own transport does.

The proxy is a hostile server whose one handler forwards each absolute-URI GET to its
target and marks it with a `Via` header, so both sides show which way a request went.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.hostile import HostileRun, HostileServer, Received, Reply, reply, stock, video_path

VIA = "1.1 tfbulk-test-proxy"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "content-length", "transfer-encoding"}


def forward(request: Received, _count: int) -> Reply:
    """What a forward proxy does with `GET http://host:port/path HTTP/1.1`."""
    target = urlsplit(request.target)
    if target.scheme != "http" or not target.port:
        return reply(400, b"not an absolute http URI\n")
    headers = {k: v for k, v in request.headers if k.lower() not in HOP_BY_HOP}
    headers["Via"] = VIA
    upstream = http.client.HTTPConnection("127.0.0.1", target.port, timeout=10)
    try:
        path = target.path + (f"?{target.query}" if target.query else "")
        upstream.request(request.method, path, headers=headers)
        response = upstream.getresponse()
        body = response.read()
        kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        return reply(response.status, body, [*kept, ("Via", VIA)])
    finally:
        upstream.close()


@pytest.fixture
def origin() -> Iterator[HostileServer]:
    with HostileServer() as running:
        yield running


@pytest.fixture
def proxy() -> Iterator[HostileServer]:
    with HostileServer() as running:
        running.route_all(forward)
        yield running


@pytest.fixture
def run(tmp_path, origin: HostileServer) -> HostileRun:
    return HostileRun(tmp_path, origin.base_url + "/v/{segment_id}.mp4?k=1")


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
def test_requests_go_through_the_proxy(
    run: HostileRun, origin: HostileServer, proxy: HostileServer, variable: str
) -> None:
    bodies = stock(origin, run, 3)
    result = run.run(env={variable: proxy.base_url, "NO_PROXY": "", "no_proxy": ""})
    assert result.code == 0, result.stderr
    wanted = {origin.url(video_path(segment)) + "?k=1" for segment in bodies}
    assert {r.target for r in proxy.log} == wanted, "not every request went to the proxy"
    assert all(r.header("via") == VIA for r in origin.log), "a request bypassed the proxy"
    for segment, body in bodies.items():
        assert run.file_of(segment).read_bytes() == body


def test_no_proxy_bypasses_the_proxy(
    run: HostileRun, origin: HostileServer, proxy: HostileServer
) -> None:
    bodies = stock(origin, run, 3)
    result = run.run(env={"HTTP_PROXY": proxy.base_url, "NO_PROXY": "127.0.0.1"})
    assert result.code == 0, result.stderr
    assert proxy.log == [], "NO_PROXY=127.0.0.1 was not honoured"
    assert len(origin.log) == len(bodies)
    assert all(r.header("via") is None for r in origin.log)
    for segment, body in bodies.items():
        assert run.file_of(segment).read_bytes() == body
