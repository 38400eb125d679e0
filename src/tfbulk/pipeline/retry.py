"""How failures are classified and what each class earns: retry now, later, or never.

Pure decisions with no I/O, so every row of the policy table is a unit test.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from enum import StrEnum

# What to check after a second 403 in a row, by `--signer`.
FORBIDDEN_HINTS = {
    "cloudfront": "check --key-pair-id, the private key and this machine's clock",
    "s3": "check the AWS credentials, --bucket, --region and this machine's clock",
    "none": "the origin refuses unsigned URLs; choose --signer cloudfront or s3",
}
FORBIDDEN_HINT = FORBIDDEN_HINTS["cloudfront"]


class Kind(StrEnum):
    NETWORK = "network"  # connect error, timeout, reset, short body
    SERVER = "server"  # 5xx and 429
    FORBIDDEN = "forbidden"  # 403
    GONE = "gone"  # 404, 410
    CLIENT = "client"  # other 4xx
    INVALID = "invalid"  # 200 whose body failed verification


class AttemptFailed(Exception):
    """One attempt did not produce a verified file."""

    def __init__(
        self,
        kind: Kind,
        message: str,
        *,
        retry_after: float | None = None,
        restart: bool = False,
        permanent: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after
        self.restart = restart  # the `.part` is no good: the next attempt starts from zero
        self.permanent = permanent  # asking again cannot help (a redirect loop, too large)


def kind_of_status(status: int) -> Kind:
    if status in (404, 410):
        return Kind.GONE
    if status == 403:
        return Kind.FORBIDDEN
    if status == 429 or status >= 500:
        return Kind.SERVER
    return Kind.CLIENT


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits U(0, min(cap, base·2ⁿ⁻¹))."""

    base: float = 1.0
    cap: float = 120.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(max(0, attempt - 1), 64))
        return (rng or random).uniform(0, ceiling)


class Action(StrEnum):
    NOW = "now"  # attempt again at once, in the same slot
    LATER = "later"  # back to the queue, due after `delay`; the slot goes to another segment
    FAIL = "fail"  # no more attempts this run


@dataclass(frozen=True)
class Decision:
    action: Action
    delay: float
    message: str


def decide(
    failure: AttemptFailed,
    attempt: int,
    max_attempts: int,
    previous: Kind | None,
    backoff: Backoff,
    hint: str = FORBIDDEN_HINT,
) -> Decision:
    """What to do after `attempt` (1-based, this run) failed with `failure`.

    `hint` is added to a second 403 in a row: what to check for the signer in use.
    """
    message = failure.message
    if failure.kind is Kind.FORBIDDEN and previous is Kind.FORBIDDEN:
        message = f"{message} ({hint})"
    permanent = (
        failure.permanent
        or failure.kind is Kind.GONE
        or (failure.kind in (Kind.CLIENT, Kind.INVALID) and previous is failure.kind)
    )
    if permanent or attempt >= max_attempts:
        return Decision(Action.FAIL, 0.0, message)
    if failure.kind is Kind.FORBIDDEN and previous is not Kind.FORBIDDEN:
        return Decision(Action.NOW, 0.0, message)
    if failure.retry_after is not None:
        return Decision(Action.LATER, min(failure.retry_after, backoff.cap), message)
    return Decision(Action.LATER, backoff.delay(attempt), message)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" or no zone: HTTP dates are always UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
