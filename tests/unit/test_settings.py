"""Duration, size and count parsing for flags: values, and errors naming the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfbulk.errors import BadInput
from tfbulk.settings import (
    Scope,
    check_positive,
    default_state_path,
    parse_duration,
    parse_size,
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


def test_scope_is_everything() -> None:
    assert Scope().is_everything
    assert not Scope(courses=frozenset({1})).is_everything
    assert not Scope(segments=frozenset({1})).is_everything
    assert not Scope(limit_courses=3).is_everything
