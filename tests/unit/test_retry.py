"""Failure policy: what each kind of failure earns, backoff bounds and Retry-After."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from tfbulk.pipeline.retry import (
    FORBIDDEN_HINT,
    AttemptFailed,
    Backoff,
    Decision,
    Kind,
    decide,
    kind_of_status,
    parse_retry_after,
)

BACKOFF = Backoff(base=1.0, cap=120.0)
NOW = 1_700_000_000.0


def fail(kind: Kind, message: str = "boom", retry_after: float | None = None) -> AttemptFailed:
    return AttemptFailed(kind, message, retry_after=retry_after)


# -- kind_of_status --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (404, Kind.GONE),
        (410, Kind.GONE),
        (403, Kind.FORBIDDEN),
        (429, Kind.SERVER),
        (500, Kind.SERVER),
        (502, Kind.SERVER),
        (503, Kind.SERVER),
        (504, Kind.SERVER),
        (400, Kind.CLIENT),
        (401, Kind.CLIENT),
        (416, Kind.CLIENT),
    ],
)
def test_kind_of_status(status: int, kind: Kind) -> None:
    assert kind_of_status(status) is kind


# -- decide -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [404, 410])
@pytest.mark.parametrize("previous", [None, Kind.NETWORK, Kind.GONE])
def test_gone_fails_at_once(status: int, previous: Kind | None) -> None:
    decision = decide(fail(kind_of_status(status), f"HTTP {status}"), 1, 5, previous, BACKOFF)
    assert decision == Decision("fail", 0.0, f"HTTP {status}")


@pytest.mark.parametrize("previous", [None, Kind.NETWORK, Kind.SERVER, Kind.CLIENT])
def test_first_forbidden_retries_now(previous: Kind | None) -> None:
    decision = decide(fail(Kind.FORBIDDEN, "HTTP 403"), 1, 5, previous, BACKOFF)
    assert decision == Decision("now", 0.0, "HTTP 403")


def test_second_forbidden_waits_with_hint() -> None:
    decision = decide(fail(Kind.FORBIDDEN, "HTTP 403"), 2, 5, Kind.FORBIDDEN, BACKOFF)
    assert decision.action == "later"
    assert decision.message == f"HTTP 403 ({FORBIDDEN_HINT})"
    assert "--key-pair-id" in decision.message
    assert 0.0 <= decision.delay <= 2.0


def test_forbidden_on_last_attempt_fails_with_hint() -> None:
    decision = decide(fail(Kind.FORBIDDEN, "HTTP 403"), 5, 5, Kind.FORBIDDEN, BACKOFF)
    assert decision == Decision("fail", 0.0, f"HTTP 403 ({FORBIDDEN_HINT})")


@pytest.mark.parametrize("kind", [Kind.CLIENT, Kind.INVALID])
def test_client_and_invalid_get_one_retry(kind: Kind) -> None:
    first = decide(fail(kind, "first"), 1, 5, None, BACKOFF)
    assert first.action == "later"
    assert first.message == "first"
    assert 0.0 <= first.delay <= 1.0
    second = decide(fail(kind, "second"), 2, 5, kind, BACKOFF)
    assert second == Decision("fail", 0.0, "second")


@pytest.mark.parametrize(
    ("kind", "previous"), [(Kind.CLIENT, Kind.INVALID), (Kind.INVALID, Kind.CLIENT)]
)
def test_client_after_other_kind_is_first_of_its_kind(kind: Kind, previous: Kind) -> None:
    assert decide(fail(kind), 2, 5, previous, BACKOFF).action == "later"


@pytest.mark.parametrize("kind", [Kind.NETWORK, Kind.SERVER])
@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 8, 9])
def test_network_and_server_back_off(kind: Kind, attempt: int) -> None:
    backoff = Backoff(base=2.0, cap=100.0)
    ceiling = min(backoff.cap, backoff.base * 2 ** (attempt - 1))
    for previous in (None, kind):
        for _ in range(50):
            decision = decide(fail(kind, "reset"), attempt, 10, previous, backoff)
            assert decision.action == "later"
            assert decision.message == "reset"
            assert 0.0 <= decision.delay <= ceiling


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("attempt", [5, 6])
def test_out_of_attempts_fails(kind: Kind, attempt: int) -> None:
    decision = decide(fail(kind, "msg", retry_after=1.0), attempt, 5, None, BACKOFF)
    assert decision.action == "fail"
    assert decision.delay == 0.0


def test_single_attempt_never_retries() -> None:
    assert decide(fail(Kind.FORBIDDEN), 1, 1, None, BACKOFF).action == "fail"
    assert decide(fail(Kind.NETWORK), 1, 1, None, BACKOFF).action == "fail"


@pytest.mark.parametrize(("retry_after", "delay"), [(0.0, 0.0), (7.0, 7.0), (120.0, 120.0)])
def test_retry_after_is_honoured(retry_after: float, delay: float) -> None:
    decision = decide(fail(Kind.SERVER, "HTTP 503", retry_after), 1, 5, None, BACKOFF)
    assert decision == Decision("later", delay, "HTTP 503")


@pytest.mark.parametrize("retry_after", [121.0, 3600.0, 1e9])
def test_retry_after_is_capped(retry_after: float) -> None:
    decision = decide(fail(Kind.SERVER, "HTTP 429", retry_after), 3, 5, None, BACKOFF)
    assert decision == Decision("later", 120.0, "HTTP 429")


def test_forbidden_retry_now_ignores_retry_after() -> None:
    decision = decide(fail(Kind.FORBIDDEN, "HTTP 403", 30.0), 1, 5, None, BACKOFF)
    assert decision == Decision("now", 0.0, "HTTP 403")


# -- Backoff -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "cap", "attempt", "ceiling"),
    [
        (1.0, 120.0, 0, 1.0),
        (1.0, 120.0, 1, 1.0),
        (1.0, 120.0, 2, 2.0),
        (1.0, 120.0, 3, 4.0),
        (1.0, 120.0, 7, 64.0),
        (1.0, 120.0, 8, 120.0),
        (1.0, 120.0, 30, 120.0),
        (0.5, 3.0, 3, 2.0),
        (0.5, 3.0, 4, 3.0),
        (10.0, 5.0, 1, 5.0),
    ],
)
def test_backoff_bounds(base: float, cap: float, attempt: int, ceiling: float) -> None:
    backoff = Backoff(base=base, cap=cap)
    rng = random.Random(attempt * 1000 + int(base * 10))
    samples = [backoff.delay(attempt, rng) for _ in range(2000)]
    assert all(0.0 <= sample <= ceiling for sample in samples)
    # Full jitter spreads over the whole range, not a sliver of it.
    assert min(samples) < ceiling * 0.05
    assert max(samples) > ceiling * 0.95
    assert 0.4 * ceiling < sum(samples) / len(samples) < 0.6 * ceiling


def test_backoff_is_reproducible_with_seeded_rng() -> None:
    rng_a, rng_b = random.Random(42), random.Random(42)
    first = [BACKOFF.delay(n, rng_a) for n in range(1, 10)]
    second = [BACKOFF.delay(n, rng_b) for n in range(1, 10)]
    assert first == second
    unit = random.Random(42).random()
    # The same random draw scales with the attempt's ceiling: 1, 2, 4, ... capped at 120.
    scaled = [BACKOFF.delay(n, random.Random(42)) for n in (1, 2, 3, 8)]
    assert scaled == pytest.approx([unit, 2 * unit, 4 * unit, 120 * unit])


def test_backoff_huge_attempt_stays_capped() -> None:
    assert 0.0 <= BACKOFF.delay(1100, random.Random(1)) <= BACKOFF.cap


# -- parse_retry_after -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("0", 0.0), ("7", 7.0), (" 120 ", 120.0), ("86400", 86400.0)],
)
def test_parse_retry_after_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value, NOW) == seconds


def test_parse_retry_after_http_date() -> None:
    when = datetime.fromtimestamp(NOW + 90, tz=UTC)
    header = format_datetime(when, usegmt=True)  # e.g. "Tue, 14 Nov 2023 22:14:50 GMT"
    assert header.endswith(" GMT")
    assert parse_retry_after(header, NOW) == pytest.approx(90.0)


def test_parse_retry_after_fixed_date() -> None:
    now = datetime(2015, 10, 21, 7, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now) == 28 * 60
    assert parse_retry_after("Wed, 21 Oct 2015 09:28:00 +0200", now) == 28 * 60


def test_parse_retry_after_past_date_is_zero() -> None:
    when = datetime.fromtimestamp(NOW - 3600, tz=UTC)
    assert parse_retry_after(format_datetime(when, usegmt=True), NOW) == 0.0


@pytest.fixture
def utc_minus_5(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run with the local time zone at UTC-5."""
    monkeypatch.setenv("TZ", "EST5")  # POSIX rule: no tzdata needed
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_parse_retry_after_gmt_date_ignores_local_zone(utc_minus_5: None) -> None:
    now = datetime(2015, 10, 21, 7, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now) == 28 * 60


def test_parse_retry_after_minus_zero_zone_is_utc(utc_minus_5: None) -> None:
    now = datetime(2015, 10, 21, 7, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 -0000", now) == 28 * 60


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "-5", "1.5", "Wed, 99 Foo"])
def test_parse_retry_after_garbage(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None
