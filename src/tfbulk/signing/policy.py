"""CloudFront policy statements: the JSON that is signed, and the rules CloudFront reads from it.

A canned policy is the custom one with nothing but DateLessThan, so both are built by one
function, with botocore's key order and separators: that makes our bytes, and so our RSA
signatures, the same as the AWS SDKs' for the same policy.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import TypeVar

HASH_ALGORITHMS = ("SHA1", "SHA256")  # what CloudFront's Hash-Algorithm parameter takes

T = TypeVar("T")

_SENT_AS_IS = re.compile(r"[!-\"$-~]+")  # printable ASCII but `#`


def sent_as_is(text: str) -> bool:
    """Whether a URL (or a Resource) goes on the wire as written: printable ASCII, no space,
    no `#` (a fragment never leaves the client). CloudFront compares what it received."""
    return _SENT_AS_IS.fullmatch(text) is not None


@dataclass(frozen=True)
class Conditions:
    """What a custom policy adds to its expiry: a start time and a range of client addresses."""

    date_greater_than: int | None = None
    ip_address: str | None = None  # a CIDR, written into the policy as it is

    @property
    def any(self) -> bool:
        return self.date_greater_than is not None or self.ip_address is not None


NO_CONDITIONS = Conditions()


def custom_policy(resource: str, expires: int, conditions: Conditions = NO_CONDITIONS) -> bytes:
    """The policy JSON as botocore's `build_policy` writes it (DateLessThan, IpAddress,
    DateGreaterThan; no spaces); with no conditions it is the canned policy."""
    condition: dict[str, dict[str, int | str]] = {"DateLessThan": {"AWS:EpochTime": expires}}
    if conditions.ip_address is not None:
        condition["IpAddress"] = {"AWS:SourceIp": conditions.ip_address}
    if conditions.date_greater_than is not None:
        condition["DateGreaterThan"] = {"AWS:EpochTime": conditions.date_greater_than}
    statement = {"Resource": resource, "Condition": condition}
    return json.dumps({"Statement": [statement]}, separators=(",", ":")).encode("utf-8")


def canned_policy(url: str, expires: int) -> bytes:
    """The canned policy CloudFront rebuilds from `Expires` to check a canned signature."""
    return custom_policy(url, expires)


class ResourcePattern:
    """A policy's Resource as CloudFront matches it: `*` is any run of characters (`/` and `?`
    included), `?` exactly one, everything else itself; the whole URL must match.

    Matched piece by piece between the stars, each at its leftmost place, rather than as one
    regular expression: `.*a.*a.*b` backtracks exponentially, this stays O(len(url) * len)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._pieces = [(_piece(part), len(part)) for part in text.split("*")]

    def matches(self, url: str) -> bool:
        if len(self._pieces) == 1:
            return self._pieces[0][0].fullmatch(url) is not None
        (first, start), *middle, (last, tail) = self._pieces
        end = len(url) - tail
        if end < start or not first.match(url) or not last.fullmatch(url, end):
            return False
        for piece, _ in middle:
            found = piece.search(url, start, end)
            if found is None:
                return False
            start = found.end()
        return True


def _piece(text: str) -> re.Pattern[str]:
    """A run between stars: fixed length, `?` for any one character."""
    return re.compile("".join("." if char == "?" else re.escape(char) for char in text), re.DOTALL)


@dataclass(frozen=True)
class Statement:
    """The one statement of a policy a signed URL carries, as the origin checks it."""

    resource: ResourcePattern
    date_less_than: int
    conditions: Conditions

    def refusal(self, url: str, now: float, client: str) -> str | None:
        """Why CloudFront would refuse `url` from `client` at `now`, or None if it would not."""
        if not self.resource.matches(url):
            return "the URL does not match the policy's Resource"
        if now >= self.date_less_than:
            return "signature expired"
        start = self.conditions.date_greater_than
        if start is not None and now < start:
            return "signature not valid yet (DateGreaterThan)"
        cidr = self.conditions.ip_address
        if cidr is not None and not _within(client, cidr):
            return f"client address {client} is not in the policy's IpAddress {cidr}"
        return None


def _within(client: str, cidr: str) -> bool:
    """Whether `client` is in `cidr`; an IPv4 peer of a dual-stack socket (`::ffff:a.b.c.d`)
    counts as the IPv4 address it is."""
    address = ipaddress.ip_address(client)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address in ipaddress.ip_network(cidr, strict=False)


def parse_policy(document: bytes) -> Statement:
    """The statement of a custom policy; ValueError naming what is malformed."""
    try:
        data = json.loads(document)
        (statement,) = data["Statement"]
        condition = dict(statement["Condition"])
    except (ValueError, KeyError, TypeError):
        raise ValueError("malformed Policy: one Statement with a Condition expected") from None
    unknown = set(condition) - {"DateLessThan", "DateGreaterThan", "IpAddress"}
    if unknown:
        raise ValueError(f"malformed Policy: unknown condition {sorted(unknown)[0]}")
    if "DateLessThan" not in condition:
        raise ValueError("malformed Policy: no DateLessThan")
    return Statement(
        ResourcePattern(_field(statement, "Resource", str, default="*")),
        _epoch(condition["DateLessThan"]),
        Conditions(
            _epoch(condition["DateGreaterThan"]) if "DateGreaterThan" in condition else None,
            _cidr(condition["IpAddress"]) if "IpAddress" in condition else None,
        ),
    )


def _epoch(value: object) -> int:
    epoch = _field(value, "AWS:EpochTime", int)
    if isinstance(epoch, bool):  # JSON true is a Python int too
        raise ValueError("malformed Policy: AWS:EpochTime must be a whole number")
    return epoch


def _cidr(value: object) -> str:
    text = _field(value, "AWS:SourceIp", str)
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"malformed Policy: AWS:SourceIp {text!r} is not a CIDR") from None
    return text


def _field(value: object, name: str, kind: type[T], default: T | None = None) -> T:
    """`value[name]` if `value` is a JSON object holding a `kind` there (or `default`)."""
    found = value.get(name, default) if isinstance(value, dict) else None
    if not isinstance(found, kind):
        what = "a whole number" if kind is int else "a string"
        raise ValueError(f"malformed Policy: {name} must be {what}")
    return found
