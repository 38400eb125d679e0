"""Duration, size, count, time and CIDR parsing for flags: values, and errors naming the flag."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tfbulk.errors import BadInput
from tfbulk.settings import (
    PolicySettings,
    check_cidr,
    check_positive,
    default_state_path,
    parse_duration,
    parse_size,
    parse_time,
    policy_settings,
    resolve_state,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("30m", 1800.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1d2h3m4s", 93784.0),
        ("2.5", 2.5),
        ("90", 90.0),
        (" 2H ", 7200.0),
        ("1.5h", 5400.0),
        ("0.5s", 0.5),
        ("30M", 1800.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text, "--expires") == seconds


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("banana", "is not a duration"),
        ("", "is not a duration"),
        ("   ", "is not a duration"),
        ("5x", "is not a duration"),
        ("1h banana", "is not a duration"),
        ("h", "is not a duration"),
        ("1h 30m", "is not a duration"),
        ("1hm", "is not a duration"),
        ("-5m", "is not a duration"),
        ("0", "must be longer than zero"),
        ("0s", "must be longer than zero"),
        ("0h0m", "must be longer than zero"),
        ("-5", "must be longer than zero"),
    ],
)
def test_parse_duration_errors_name_the_flag(text: str, why: str) -> None:
    with pytest.raises(BadInput) as info:
        parse_duration(text, "--backoff-max")
    message = str(info.value)
    assert message.startswith("--backoff-max: ")
    assert repr(text) in message
    assert why in message


@pytest.mark.parametrize("text", ["nan", "inf", "infinity", "NaN"])
def test_parse_duration_refuses_non_finite(text: str) -> None:
    with pytest.raises(BadInput, match="--expires"):
        parse_duration(text, "--expires")


@pytest.mark.parametrize(
    ("text", "size"),
    [("512", 512), ("512k", 524288), ("2M", 2 * 1024**2), ("1.5GiB", 1536 * 1024**2)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text, "--min-size") == size


@pytest.mark.parametrize("text", ["", "big", "5T", "-1k"])
def test_parse_size_errors_name_the_flag(text: str) -> None:
    with pytest.raises(BadInput, match=r"^--max-size: "):
        parse_size(text, "--max-size")


def test_check_positive() -> None:
    assert check_positive(1, "--concurrency") == 1
    with pytest.raises(BadInput, match=r"--concurrency must be at least 1 \(got 0\)"):
        check_positive(0, "--concurrency")


def test_state_path_defaults_under_dest() -> None:
    assert default_state_path(Path("dl")) == Path("dl/.tfbulk/state.db")
    assert resolve_state(None, Path("dl")) == str(Path("dl/.tfbulk/state.db"))
    assert resolve_state("other.db", Path("dl")) == "other.db"


# -- CloudFront policy flags --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("1767225600", 1767225600),
        (" 0 ", 0),
        ("2026-01-01T00:00:00Z", 1767225600),
        ("2026-01-01T00:00:00", 1767225600),  # no zone: UTC, as the AWS CLI reads it
        ("2026-01-01", 1767225600),
        ("2026-01-01T02:00:00+02:00", 1767225600),
        ("2026-01-01T00:00:00.9Z", 1767225600),
    ],
)
def test_parse_time(text: str, epoch: int) -> None:
    assert parse_time(text, "--date-greater-than") == epoch


@pytest.mark.parametrize("text", ["yesterday", "-5", "2026-13-01", "1.5", ""])
def test_parse_time_errors_name_the_flag(text: str) -> None:
    with pytest.raises(BadInput, match=r"^--date-greater-than: .* is not a time; use Unix"):
        parse_time(text, "--date-greater-than")


@pytest.mark.parametrize(
    ("text", "cidr"),
    [
        ("203.0.113.0/24", "203.0.113.0/24"),
        ("203.0.113.7", "203.0.113.7/32"),
        ("192.168.0.1/24", "192.168.0.1/24"),  # as AWS's own examples write it
        ("2001:db8::/32", "2001:db8::/32"),
        ("2001:db8::1", "2001:db8::1/128"),
        (" 10.0.0.0/8 ", "10.0.0.0/8"),
    ],
)
def test_check_cidr(text: str, cidr: str) -> None:
    assert check_cidr(text, "--ip-address") == cidr


@pytest.mark.parametrize("text", ["10.0.0.0/33", "localhost", "10.0.0", "", "1.2.3.4/24/8"])
def test_check_cidr_errors_name_the_flag(text: str) -> None:
    with pytest.raises(BadInput, match=r"^--ip-address .* is not an IP address range; use CIDR"):
        check_cidr(text, "--ip-address")


def test_policy_settings_defaults_to_a_canned_sha1_policy() -> None:
    default = policy_settings(None, None, None, None)
    assert default == PolicySettings() and not default.is_custom and default.flags() == []
    sha256 = policy_settings("sha-256", None, None, None)
    assert sha256.hash_algorithm == "SHA256" and not sha256.is_custom
    assert sha256.flags() == ["--hash-algorithm"]


def test_any_policy_flag_makes_it_custom() -> None:
    full = policy_settings("SHA1", "https://h/*", "2026-01-01", "10.0.0.0/8")
    assert full == PolicySettings("SHA1", "https://h/*", 1767225600, "10.0.0.0/8")
    assert full.is_custom
    assert full.flags() == ["--policy-resource", "--date-greater-than", "--ip-address"]
    assert policy_settings(None, None, "5", None).is_custom
    assert policy_settings(None, None, None, "10.0.0.1").is_custom


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (("MD5", None, None, None), "--hash-algorithm 'MD5' is not SHA1 or SHA256"),
        ((None, "https://h/a b/*", None, None), "--policy-resource 'https://h/a b/*' must be"),
        ((None, "https://h/#*", None, None), "without spaces or '#'"),
        ((None, "", None, None), "--policy-resource '' must be"),
        ((None, "https://h/é/*", None, None), "printable ASCII"),
    ],
)
def test_policy_settings_refuse_bad_flags(flags: tuple[str | None, ...], needle: str) -> None:
    with pytest.raises(BadInput, match=re.escape(needle)):
        policy_settings(*flags)
