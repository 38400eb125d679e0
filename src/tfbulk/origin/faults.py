"""Misbehaviour the origin can be told to inject per path, and the log of what it answered."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from email.utils import formatdate


@dataclass
class Fault:
    """Misbehaviour for one path, for its first `times` requests (0 = every request).

    status: answer with this HTTP status instead of the body (with `retry_after` if set,
    or with an HTTP-date `retry_date_in` seconds after the moment of refusal);
    html: answer 200 with an HTML error page; drop_after: send that many body bytes,
    then cut the connection; delay: wait that long before answering; wrong_md5: serve an
    ETag that does not match the body; stall: stop sending mid-body for that long;
    change_after: publish a new version of the object once this response is sent;
    gate: hold the body half-way until this event is set (tests synchronise on it);
    corrupt_at: flip the byte at this offset of the object as it is sent, under the same
    ETag (bytes damaged in transit: only an MD5 check finds them).
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
    corrupt_at: int | None = None
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
