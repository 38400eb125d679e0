"""tfbulk's HTTP semantics against servers that lie, loop, stall and change under it.

Every case is a real `tfbulk run` against `tests.hostile.HostileServer` on 127.0.0.1,
with a few correctly served segments beside the hostile one: a bad segment must fail (or
recover) on its own, and never take the rest of the run down with it.
"""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile import (
    MAX_SENT,
    HostileRun,
    HostileServer,
    Received,
    Reply,
    Then,
    head,
    http_date,
    md5_etag,
    mp4,
    redirect,
    reply,
    script,
    serve,
    socket_buffers,
    stock,
    video_path,
)

SIZE = 64 * 1024
HALF = SIZE // 2
TIMEOUT = "timeout: no data received for the read timeout"


@pytest.fixture
def server() -> Iterator[HostileServer]:
    with HostileServer() as running:
        yield running


@pytest.fixture
def other() -> Iterator[HostileServer]:
    """A second server: another port, so another "host" to libcurl."""
    with HostileServer() as running:
        yield running


@pytest.fixture
def hostile(tmp_path, server: HostileServer) -> HostileRun:
    return HostileRun(tmp_path, server.base_url + "/v/{segment_id}.mp4")


def contents(part: Path) -> bytes:
    """A `.part` file's bytes, empty if there is none (yet, or no longer: tfbulk may rename
    or remove it between a check and a read)."""
    try:
        return part.read_bytes()
    except FileNotFoundError:
        return b""


def assert_others_succeed(run: HostileRun, bodies: dict[int, bytes], *bad: int) -> None:
    """The segments not named in `bad` are `success`, byte for byte."""
    states = run.states()
    for segment, body in bodies.items():
        if segment in bad:
            continue
        assert states[segment] == "success", (segment, run.failures().get(segment))
        assert run.file_of(segment).read_bytes() == body


def assert_failed(run: HostileRun, segment: int) -> None:
    """Failed, and nothing of it left behind: no final file, no `.part`."""
    assert run.states()[segment] == "failed"
    assert not run.file_of(segment).exists(), "a bad body was published"
    assert not run.part_of(segment).exists()


def start_of(request: Received) -> int:
    """The first byte a `Range: bytes=N-` asks for."""
    assert request.range and request.range.startswith("bytes="), request.range
    return int(request.range.removeprefix("bytes=").partition("-")[0])


# -- resume against a server that ignores If-Range ---------------------------------------


VALIDATORS = {
    "etag": ([("ETag", '"version-A"')], [("ETag", '"version-B"')]),
    "last-modified": (
        [("Last-Modified", http_date(1_700_000_000))],
        [("Last-Modified", http_date(1_700_000_600))],
    ),
}


@pytest.mark.parametrize("validator", VALIDATORS)
def test_a_206_of_a_changed_object_is_never_spliced(
    hostile: HostileRun, server: HostileServer, validator: str
) -> None:
    """Version A is cut half-way; the object changes to B, and a server ignoring If-Range
    sends B's tail as a 206. Opaque validators and equal sizes: a splice would pass every
    other check, so only the validator comparison stands between B's tail and A's head."""
    bodies = stock(server, hostile, 3)
    segment = hostile.segments[0]
    a, b = mp4(SIZE, "A"), mp4(SIZE, "B")
    old, new = VALIDATORS[validator]
    part_seen: list[bytes] = []

    def changes_and_ignores_if_range(request: Received, count: int) -> Reply:
        if count == 0:
            return reply(200, a[:HALF], old, length=SIZE, then="close")
        if request.range:
            part = hostile.part_of(segment)
            part_seen.append(contents(part))
            start = start_of(request)
            span = [("Content-Range", f"bytes {start}-{SIZE - 1}/{SIZE}")]
            return reply(206, b[start:], [*span, *new])
        return reply(200, b, new)

    server.route(video_path(segment), changes_and_ignores_if_range)
    result = hostile.run("--retries", "4")
    assert result.code == 0, result.stderr
    requests = server.requests_for(video_path(segment))
    assert [r.range for r in requests] == [None, f"bytes={HALF}-", None], "no start-over"
    assert requests[1].header("if-range") == old[0][1]
    assert part_seen == [a[:HALF]], "the .part did not hold A's prefix when resumed"
    assert hostile.file_of(segment).read_bytes() == b
    assert "resume refused: the object changed" in hostile.retry_reasons(segment)[1]
    assert_others_succeed(hostile, bodies, segment)


def test_a_206_that_does_not_start_at_the_offset_starts_over(
    hostile: HostileRun, server: HostileServer
) -> None:
    """Same object, but the 206 begins before the offset, with exactly as many bytes as
    are missing: appended, they would make a file of the right size and the wrong bytes."""
    bodies = stock(server, hostile, 3)
    segment = hostile.segments[0]
    a = mp4(SIZE, "A")
    etag = [("ETag", '"version-A"')]

    def misplaced_range(request: Received, count: int) -> Reply:
        if count == 0:
            return reply(200, a[:HALF], etag, length=SIZE, then="close")
        if request.range:
            start = start_of(request) // 2
            end = start + SIZE - start_of(request)
            span = [("Content-Range", f"bytes {start}-{end - 1}/{SIZE}")]
            return reply(206, a[start:end], [*span, *etag])
        return reply(200, a, etag)

    server.route(video_path(segment), misplaced_range)
    result = hostile.run("--retries", "4")
    assert result.code == 0, result.stderr
    requests = server.requests_for(video_path(segment))
    assert [r.range for r in requests] == [None, f"bytes={HALF}-", None], "no start-over"
    assert hostile.file_of(segment).read_bytes() == a
    assert f"does not continue at byte {HALF}" in hostile.retry_reasons(segment)[1]
    assert_others_succeed(hostile, bodies, segment)


# -- redirects -----------------------------------------------------------------------------


REDIRECTS = (301, 302, 303, 307, 308)


def redirected(
    run: HostileRun, server: HostileServer, other: HostileServer, location: str
) -> dict[int, bytes]:
    """One segment per redirect status, each to `location` ({segment} filled in) on `other`."""
    bodies = {}
    for status, segment in zip(REDIRECTS, run.catalogue(len(REDIRECTS)), strict=True):
        bodies[segment] = body = mp4(SIZE, segment)
        server.route(
            video_path(segment), script(redirect(status, location.format(segment=segment)))
        )
        other.route(f"/moved/{segment}.mp4", serve(body, md5_etag(body)))
    return bodies


def test_redirects_to_another_host_are_plain_gets_of_the_location(
    tmp_path, server: HostileServer, other: HostileServer
) -> None:
    """Each status to another port: a GET with no body, of the Location (the original
    query not carried over), and no credentials or cookies of the first host."""
    template = f"http://user:secret@127.0.0.1:{server.port}/v/{{segment_id}}.mp4?orig=1"
    run = HostileRun(tmp_path, template)
    bodies = redirected(run, server, other, other.url("/moved/{segment}.mp4?token=A%2Fb~"))
    result = run.run()
    assert result.code == 0, result.stderr
    for status, segment in zip(REDIRECTS, run.segments, strict=True):
        (first,) = server.requests_for(video_path(segment))
        assert first.header("authorization"), "the test URL's credentials were not sent at all"
        (moved,) = other.requests_for(f"/moved/{segment}.mp4")
        assert moved.method == "GET", status
        assert not moved.has_body, (status, moved.headers)
        assert moved.target == f"/moved/{segment}.mp4?token=A%2Fb~", status
        assert moved.header("host") == f"127.0.0.1:{other.port}", status
        assert moved.header("authorization") is None, f"{status}: credentials to another host"
        assert moved.header("cookie") is None, status
    assert_others_succeed(run, bodies)


def test_a_location_is_requested_byte_for_byte(
    hostile: HostileRun, server: HostileServer, other: HostileServer
) -> None:
    """A CDN may redirect to a URL signed over its exact bytes, lower-case escapes and all."""
    bodies = redirected(hostile, server, other, other.url("/moved/{segment}.mp4?sig=a%2fb%3d"))
    result = hostile.run("--retries", "1")
    assert result.code == 0, result.stderr
    targets = {r.target for r in other.log}
    assert targets == {f"/moved/{segment}.mp4?sig=a%2fb%3d" for segment in bodies}


def test_ten_redirects_are_followed_eleven_or_a_loop_are_not(
    hostile: HostileRun, server: HostileServer, other: HostileServer
) -> None:
    """Chains of 10 and 11 hops on the other host, and a loop between the two hosts: the
    11th redirect is never followed, and the two that need it fail at once, alone."""
    bodies = stock(server, hostile, 5)
    looping, *chained = hostile.segments[:3]
    server.route(video_path(looping), script(redirect(302, other.url("/pong"))))
    other.route("/pong", script(redirect(302, server.url(video_path(looping)))))
    chains = dict(zip((10, 11), chained, strict=True))
    for hops, segment in chains.items():
        hop = [video_path(segment)] + [f"/hop/{segment}/{n}" for n in range(1, hops + 1)]
        for here, there in itertools.pairwise(hop):
            (other if here.startswith("/hop") else server).route(
                here, script(redirect(307, other.url(there)))
            )
        body = bodies[segment]
        other.route(hop[-1], serve(body, md5_etag(body)))
    result = hostile.run("--retries", "3")
    assert result.code == 1, result.stderr
    assert "Traceback" not in result.stderr
    failed = hostile.failed()
    assert {s: f["error"] for s, f in failed.items()} == {
        looping: "too many redirects",
        chains[11]: "too many redirects",
    }
    assert [f["attempts"] for f in failed.values()] == [1, 1], "worth no second attempt"
    assert len(server.requests_for(video_path(looping)) + other.requests_for("/pong")) == 11
    assert other.requests_for(f"/hop/{chains[11]}/11") == [], "an 11th redirect was followed"
    for segment in (looping, chains[11]):
        assert_failed(hostile, segment)
    assert_others_succeed(hostile, bodies, looping, chains[11])


def test_a_redirect_to_a_file_url_is_refused(hostile: HostileRun, server: HostileServer) -> None:
    bodies = stock(server, hostile, 3)
    segment = hostile.segments[0]
    server.route(video_path(segment), script(redirect(302, "file:///etc/passwd")))
    result = hostile.run("--retries", "3")
    assert result.code == 1, result.stderr
    assert "Traceback" not in result.stderr
    error = hostile.failures()[segment]
    assert error.startswith("refused: ") and "(http and https only)" in error, error
    assert len(server.requests_for(video_path(segment))) == 1
    assert_failed(hostile, segment)
    assert not any(b"root:" in p.read_bytes() for p in hostile.dest.rglob("*.mp4*"))
    assert_others_succeed(hostile, bodies, segment)


# -- lying lengths -------------------------------------------------------------------------


def test_a_body_shorter_than_its_content_length_is_never_published(
    hostile: HostileRun, server: HostileServer
) -> None:
    """Cut half-way on every attempt (a Range is answered with the same short 200): by an
    orderly close, by a reset, and with no validator at all, so with nothing to resume."""
    a = mp4(SIZE, "A")
    etag = [("ETag", md5_etag(a))]
    cuts: dict[str, tuple[list[tuple[str, str]], Then]] = {
        "close": (etag, "close"),
        "reset": (etag, "reset"),
        "no-validators": ([], "close"),
    }
    bodies = stock(server, hostile, 2 + len(cuts))
    cut_of = dict(zip(hostile.segments, cuts, strict=False))
    for segment, cut in cut_of.items():
        headers, then = cuts[cut]
        server.route(
            video_path(segment), script(reply(200, a[:HALF], headers, length=SIZE, then=then))
        )
    result = hostile.run("--retries", "3")
    assert result.code == 1, result.stderr
    for segment, cut in cut_of.items():
        requests = server.requests_for(video_path(segment))
        assert len(requests) == 3, (cut, hostile.retry_reasons(segment), hostile.failures())
        assert hostile.failures()[segment].startswith("connection error: "), cut
        assert hostile.states()[segment] == "failed", cut
        assert not hostile.file_of(segment).exists(), f"{cut}: a short body was published"
        if not cuts[cut][0]:
            assert all(r.range is None for r in requests), "resumed without a validator"
    assert_others_succeed(hostile, bodies, *cut_of)


def test_bytes_beyond_the_content_length_never_reach_the_file(
    hostile: HostileRun, server: HostileServer
) -> None:
    """Content-Length says 1,000 bytes fewer than are sent, on a kept-alive connection.
    With the longer body's MD5 as ETag the segment fails; with no ETag the file is the
    announced length, not a byte more. One connection for the whole run, so the excess
    would also poison the next segment's response if the connection were reused."""
    bodies = stock(server, hostile, 4)
    checked, unchecked = hostile.segments[:2]
    a = mp4(SIZE, "A")
    parts: list[int] = []

    def too_long(_request: Received, count: int) -> Reply:
        if count:
            part = hostile.part_of(checked)
            parts.append(len(contents(part)))
        return reply(200, a, [("ETag", md5_etag(a))], length=SIZE - 1000)

    server.route(video_path(checked), too_long)
    server.route(video_path(unchecked), script(reply(200, a, length=SIZE - 1000)))
    result = hostile.run("--retries", "3", "--concurrency", "1")
    assert result.code == 1, result.stderr
    error = hostile.failures()[checked]
    assert "does not match the ETag" in error or "longer than its Content-Length" in error
    assert all(size <= SIZE - 1000 for size in parts), parts
    assert_failed(hostile, checked)
    assert hostile.file_of(unchecked).read_bytes() == a[: SIZE - 1000]
    assert_others_succeed(hostile, bodies, checked, unchecked)


def test_max_file_size_stops_an_endless_body_and_refuses_a_long_one(
    hostile: HostileRun, server: HostileServer
) -> None:
    """An endless chunked body: its `.part` is looked at each time another 64 KiB chunk is
    in the kernel's hands, and never grows past the limit; tfbulk stops reading soon after.
    A Content-Length over the limit: refused before its first byte, for good."""
    bodies = stock(server, hostile, 4)
    endless, announced = hostile.segments[:2]
    piece = mp4(SIZE, "endless")
    part_sizes: list[int] = []

    def endless_chunks() -> Iterator[bytes]:
        while True:  # bounded by MAX_SENT
            part = hostile.part_of(endless)
            part_sizes.append(len(contents(part)))
            yield b"%x\r\n%s\r\n" % (len(piece), piece)

    framing = [("Transfer-Encoding", "chunked"), ("ETag", '"endless"')]
    server.route(
        video_path(endless), script(Reply(head(200, framing), endless_chunks, then="stall"))
    )
    server.route(video_path(announced), script(reply(200, mp4(2 << 20, "long"))))
    result = hostile.run("--retries", "3", "--max-file-size", "1M")
    assert result.code == 1, result.stderr
    failures = hostile.failures()
    assert "larger than --max-file-size" in failures[endless]
    assert (
        "larger than --max-file-size (the server announced 2,097,152 bytes)" in failures[announced]
    )
    (request,) = server.requests_for(video_path(endless))
    bound = min(MAX_SENT, (1 << 20) + socket_buffers())
    assert request.sent < bound, f"{request.sent:,} bytes sent for a 1M limit: tfbulk read on"
    assert max(part_sizes) <= 1 << 20, f"the .part grew to {max(part_sizes):,} bytes"
    assert len(server.requests_for(video_path(announced))) == 1
    for segment in (endless, announced):
        assert_failed(hostile, segment)
    assert_others_succeed(hostile, bodies, endless, announced)


# -- stalls --------------------------------------------------------------------------------


STALLS = {
    "headers-then-silence": Reply(head(200, [("Content-Length", str(SIZE))]), then="stall"),
    "accepts-never-answers": Reply(b"", then="stall"),
}


def test_a_stalled_server_is_a_read_timeout(hostile: HostileRun, server: HostileServer) -> None:
    bodies = stock(server, hostile, 2 + len(STALLS))
    stalled = dict(zip(hostile.segments, STALLS, strict=False))
    for segment, stall in stalled.items():
        server.route(video_path(segment), script(STALLS[stall]))
    result = hostile.run("--retries", "2", "--read-timeout", "0.5s")
    assert result.code == 1, result.stderr
    assert hostile.failures() == dict.fromkeys(stalled, TIMEOUT)
    for segment, stall in stalled.items():
        assert len(server.requests_for(video_path(segment))) == 2, stall
    assert_others_succeed(hostile, bodies, *stalled)


def endless_header_lines() -> Iterator[bytes]:
    filler = b"x" * 1000
    for number in itertools.count():
        yield b"X-Filler-%d: %s\r\n" % (number, filler)


def test_endless_header_lines_fail_without_a_hang(
    hostile: HostileRun, server: HostileServer
) -> None:
    bodies = stock(server, hostile, 3)
    segment = hostile.segments[0]
    endless = Reply(b"HTTP/1.1 200 OK\r\n", endless_header_lines, then="stall")
    server.route(video_path(segment), script(endless))
    result = hostile.run("--retries", "2", "--read-timeout", "30s", timeout=25)
    assert result.code == 1, result.stderr
    error = hostile.failures()[segment]
    assert error.startswith("connection error: ") and "header" in error.lower(), error
    bound = min(MAX_SENT, (1 << 20) + socket_buffers())
    assert all(r.sent < bound for r in server.requests_for(video_path(segment))), "read on"
    assert_failed(hostile, segment)
    assert_others_succeed(hostile, bodies, segment)


# -- framing and encodings -----------------------------------------------------------------


def test_an_http_1_0_close_delimited_body_downloads(
    hostile: HostileRun, server: HostileServer
) -> None:
    bodies = stock(server, hostile, 3)
    segment = hostile.segments[0]
    body = bodies[segment] = mp4(SIZE, "1.0")
    legacy = head(200, [("Content-Type", "video/mp4"), ("ETag", md5_etag(body))], "HTTP/1.0")
    server.route(video_path(segment), script(Reply(legacy + body, then="close")))
    result = hostile.run("--retries", "2")
    assert result.code == 0, result.stderr
    assert len(server.requests_for(video_path(segment))) == 1
    assert_others_succeed(hostile, bodies)


def test_a_gzip_body_is_not_taken_for_a_video(hostile: HostileRun, server: HostileServer) -> None:
    """`Accept-Encoding: identity` was asked for; a gzip body is not an MP4, whatever the
    server says it decodes to."""
    bodies = stock(server, hostile, 3)
    segment = hostile.segments[0]
    body = mp4(SIZE, "gz")
    headers = [("Content-Encoding", "gzip"), ("ETag", md5_etag(body))]
    server.route(video_path(segment), script(reply(200, gzip.compress(body), headers)))
    result = hostile.run("--retries", "3")
    assert result.code == 1, result.stderr
    requests = server.requests_for(video_path(segment))
    assert [r.header("accept-encoding") for r in requests] == ["identity"] * len(requests)
    assert "Content-Encoding: gzip" in hostile.failures()[segment]
    assert_failed(hostile, segment)
    assert_others_succeed(hostile, bodies, segment)
