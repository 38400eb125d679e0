"""A scriptable hostile HTTP/1.1 server on 127.0.0.1, and a workspace that runs tfbulk at it.

The fault-injecting origin (`tfbulk.origin`) is a well-behaved server with faults bolted on;
this one says exactly what a test scripts, byte for byte: a status line and headers that
may lie, a body that may be short, long, endless or compressed, then keep-alive, close,
reset or silence. Every request is recorded as it arrived (request line, headers, whether
it carried a body) so a test can assert what tfbulk sent, not only what it ended up with.

The server runs its own asyncio loop in a background thread and stops when its `with`
block ends: connections are cancelled, the thread is joined.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import socket
import sqlite3
import struct
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from tests.conftest import Result, run_in_process
from tfbulk.origin.sample import SampleCourse, SampleSegment, write_snapshot

Then = Literal["keep", "close", "reset", "stall"]
MAX_HEAD = 64 * 1024  # a request head larger than this ends the connection
MAX_SENT = 64 << 20  # an endless reply stops after this much, then does its `then`
STOP_TIMEOUT = 10.0
COURSE_ID = 1
CHANNEL_ID = 10
VIDEO_PATH = "/v/{segment_id}.mp4"
T = TypeVar("T")


@dataclass
class Received:
    """One request as it arrived, and how many bytes the reply to it put on the wire."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    sent: int = 0

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def range(self) -> str | None:
        return self.header("range")

    @property
    def has_body(self) -> bool:
        """Did the request announce a body (either framing)?"""
        return self.header("content-length") is not None or bool(self.header("transfer-encoding"))


@dataclass(frozen=True)
class Reply:
    """What the server sends for one request: `data` as is, then the pieces `more()` yields
    (it may never end: at most MAX_SENT bytes go out), then what `then` says:

    - keep: read the next request on the same connection;
    - close: an orderly close (FIN), however much of the announced body was sent;
    - reset: an abortive close (RST);
    - stall: send nothing more and hold the connection until the client drops it.
    """

    data: bytes
    more: Callable[[], Iterator[bytes]] | None = None
    then: Then = "keep"


Handler = Callable[[Received, int], Reply]  # the request, and how many came before it on its path


def head(status: int, headers: Sequence[tuple[str, str]] = (), version: str = "HTTP/1.1") -> bytes:
    """A raw response head: `HTTP/1.1 200 OK`, the header lines, the blank line."""
    lines = [f"{version} {status} {HTTPStatus(status).phrase}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def reply(
    status: int,
    body: bytes = b"",
    headers: Sequence[tuple[str, str]] = (),
    *,
    length: int | None = -1,
    then: Then = "keep",
) -> Reply:
    """A response with `body`; `length` is the Content-Length to announce (-1: the truth,
    None: none at all)."""
    announced = len(body) if length == -1 else length
    framing = [] if announced is None else [("Content-Length", str(announced))]
    return Reply(head(status, [*framing, *headers]) + body, then=then)


def mp4(size: int, seed: object) -> bytes:
    """`size` bytes that tfbulk's verify accepts as MP4: an `ftyp` box, an `mdat` of noise."""
    ftyp = struct.pack(">I4s4sI8s", 24, b"ftyp", b"isom", 0x200, b"isomiso2")
    mdat = struct.pack(">I4s", size - len(ftyp), b"mdat")
    return ftyp + mdat + random.Random(str(seed)).randbytes(size - len(ftyp) - len(mdat))


def md5_etag(body: bytes) -> str:
    """A plain MD5 ETag, as S3 gives one (tfbulk checks the body against it)."""
    return f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'


def socket_buffers() -> int:
    """The most that loopback TCP can hold between a sender and a reader that stopped
    reading: the largest send buffer plus the largest receive buffer this kernel allows.
    What a server sent beyond what the client read is never more than this."""
    total = 0
    for name in ("tcp_wmem", "tcp_rmem"):
        total += int(Path("/proc/sys/net/ipv4", name).read_text().split()[2])
    return total


def http_date(epoch: int) -> str:
    return formatdate(epoch, usegmt=True)


def serve(body: bytes, etag: str | None = None, last_modified: str | None = None) -> Handler:
    """A plain server for one object: a 200 with its validators, whatever was asked (a
    server may ignore a Range; its 200 says so)."""
    validators = [(n, v) for n, v in (("ETag", etag), ("Last-Modified", last_modified)) if v]
    return script(reply(200, body, validators))


def script(*replies: Reply) -> Handler:
    """The n-th request gets the n-th reply; the last one answers every request after it."""

    def handle(_request: Received, count: int) -> Reply:
        return replies[min(count, len(replies) - 1)]

    return handle


def redirect(status: int, location: str) -> Reply:
    return reply(status, b"moved\n", [("Location", location), ("Set-Cookie", "sid=secret")])


class HostileServer:
    """`with HostileServer() as server:`; `server.route(path, handler)` scripts a path.

    Unrouted paths get a 404, or what `route_all` says. `log` is every request in
    arrival order. A handler that raises fails the test when the server stops.
    """

    def __init__(self) -> None:
        self._routes: dict[str, Handler] = {}
        self._fallback: Handler = _not_found
        self._counts: dict[str, int] = {}
        self._log: list[Received] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._errors: list[Exception] = []
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def route(self, path: str, handler: Handler) -> None:
        with self._lock:
            self._routes[path] = handler

    def route_all(self, handler: Handler) -> None:
        """`handler` answers every path not given its own route (a proxy, say)."""
        with self._lock:
            self._fallback = handler

    @property
    def log(self) -> list[Received]:
        with self._lock:
            return list(self._log)

    def requests_for(self, path: str) -> list[Received]:
        return [r for r in self.log if r.path == path]

    def __enter__(self) -> HostileServer:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._connection, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._call(self._close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(STOP_TIMEOUT)
            assert not self._thread.is_alive(), "the hostile server's thread did not stop"
            self._loop.close()
        if self._errors and exc[0] is None:
            raise self._errors[0]

    def _call(self, coroutine: Coroutine[object, object, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(STOP_TIMEOUT)

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        await self._loop.shutdown_default_executor()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        writer.transport.set_write_buffer_limits(0)  # drain() means: in the kernel
        try:
            while await self._exchange(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away, or sent no request we can read
        except Exception as exc:  # a handler's bug, or a request line we cannot parse
            self._errors.append(exc)
        finally:
            self._connections.discard(task)
            writer.transport.abort()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """One request and its scripted reply; True if the connection stays open."""
        request = _parse(await reader.readuntil(b"\r\n\r\n"))
        length = request.header("content-length")
        if length and length.isdigit():
            await reader.readexactly(min(int(length), MAX_HEAD))
        with self._lock:
            self._log.append(request)
            count = self._counts.get(request.path, 0)
            self._counts[request.path] = count + 1
            handler = self._routes.get(request.path, self._fallback)
        planned = await asyncio.to_thread(handler, request, count)
        await self._send(writer, request, planned)
        match planned.then:
            case "keep":
                return not request.header("transfer-encoding")  # a body we did not frame
            case "close":
                writer.close()
                await writer.wait_closed()
            case "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            case "stall":
                while await reader.read(65536):
                    pass
        return False

    async def _send(self, writer: asyncio.StreamWriter, request: Received, planned: Reply) -> None:
        writer.write(planned.data)
        await writer.drain()
        request.sent = len(planned.data)
        for piece in planned.more() if planned.more else ():
            if request.sent >= MAX_SENT:
                return
            writer.write(piece)
            await writer.drain()
            request.sent += len(piece)


def _parse(raw: bytes) -> Received:
    lines = raw.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip(), value.strip()))
    return Received(method, target, version, headers)


def _not_found(_request: Received, _count: int) -> Reply:
    return reply(404, b"not scripted\n")


# -- running tfbulk at it ----------------------------------------------------------------


def video_path(segment: int) -> str:
    """Where a HostileRun's segment is requested: `VIDEO_PATH` with its id."""
    return VIDEO_PATH.format(segment_id=segment)


def stock(server: HostileServer, run: HostileRun, count: int, size: int = 8192) -> dict[int, bytes]:
    """A catalogue of `count` segments, each served correctly by `server`: their bodies."""
    bodies = {segment: mp4(size, segment) for segment in run.catalogue(count)}
    for segment, body in bodies.items():
        server.route(video_path(segment), serve(body, md5_etag(body), http_date(1_700_000_000)))
    return bodies


def hostile_overrides(extra: dict[str, str] | None = None) -> dict[str, str | None]:
    """The CLI's environment with none of this machine's proxy settings (only the test's
    own), so a request to 127.0.0.1 goes where the test says."""
    overrides: dict[str, str | None] = {k: None for k in os.environ if k.lower().endswith("_proxy")}
    overrides.update(extra or {})
    return overrides


@dataclass
class HostileRun:
    """A destination and a one-course snapshot whose segments `first_id`… are fetched from
    `url_template` ({segment_id} is filled in) unsigned; `run` drives the real CLI."""

    root: Path
    url_template: str
    segments: list[int] = field(default_factory=list)

    @property
    def dest(self) -> Path:
        return self.root / "videos"

    @property
    def log_file(self) -> Path:
        return self.root / "run.log"

    def catalogue(self, count: int, first_id: int = 101) -> list[int]:
        """Write a snapshot of `count` downloadable segments; their ids."""
        self.segments = list(range(first_id, first_id + count))
        snapshot = self.root / "snapshot.db"
        snapshot.unlink(missing_ok=True)
        rows = tuple(SampleSegment(s, CHANNEL_ID, f"mp4:v/{s}", f"S{s}") for s in self.segments)
        write_snapshot(snapshot, [SampleCourse(COURSE_ID, "Hostile", (CHANNEL_ID,), rows)])
        return self.segments

    def args(self, command: str = "run", *extra: str) -> list[str]:
        return [
            command,
            "--snapshot", str(self.root / "snapshot.db"),
            "--dest", str(self.dest),
            "--signer", "none",
            "--url-template", self.url_template,
            *extra,
        ]  # fmt: skip

    def run(self, *extra: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
        """`tfbulk run` with quick retries and a JSON-lines log of every retry's reason."""
        defaults = ["--backoff-base", "0.05s", "--backoff-max", "0.2s", "--read-timeout", "5s"]
        args = self.args("run", *defaults, "--log-file", str(self.log_file), *extra)
        return self.tfbulk(*args, env=env, timeout=timeout)

    def tfbulk(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
        """The CLI in-process (no signal or descriptor needs a fresh interpreter here)."""
        return run_in_process(
            list(args), cwd=self.root, env=hostile_overrides(env), timeout=timeout
        )

    def file_of(self, segment: int) -> Path:
        return self.dest / str(COURSE_ID) / f"{segment}.mp4"

    def part_of(self, segment: int) -> Path:
        return self.file_of(segment).with_name(f"{segment}.mp4.part")

    def failed(self) -> dict[int, dict]:
        """`tfbulk failed --json`, by segment id."""
        data = run_in_process(["failed", "--dest", str(self.dest), "--json"], cwd=self.root).json
        return {item["segment_id"]: item for item in data}

    def failures(self) -> dict[int, str]:
        """Why each segment of the last run failed, from its log file: the same reasons
        `tfbulk failed --json` reports, without a second CLI start."""
        return {e["segment_id"]: e["reason"] for e in self._events("segment_failed")}

    def retry_reasons(self, segment: int) -> list[str]:
        """Why each failed attempt of `segment` was retried, from the run's log file."""
        return [e["reason"] for e in self._events("segment_retry") if e["segment_id"] == segment]

    def states(self) -> dict[int, str]:
        with sqlite3.connect(self.dest / ".tfbulk" / "state.db") as conn:
            return dict(conn.execute("SELECT id, status FROM segments"))

    def _events(self, kind: str) -> list[dict]:
        lines = self.log_file.read_text().splitlines()
        return [event for event in map(json.loads, lines) if event["event"] == kind]
