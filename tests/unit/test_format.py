"""Human-readable durations, percentages, sizes and rates."""

from __future__ import annotations

import pytest

from tfbulk.display.format import counted, human_bytes, human_duration, human_rate, percent


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0, "0s"),
        (0.4, "0s"),
        (45, "45s"),
        (59.4, "59s"),
        (59.6, "1m00s"),
        (60, "1m00s"),
        (133, "2m13s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (3720, "1h02m"),
        (3725, "1h02m"),
        (86399, "23h59m"),
        (86400, "1d00h"),
        (3 * 86400 + 4 * 3600, "3d04h"),
        (3 * 86400 + 4 * 3600 + 59 * 60, "3d04h"),
        (12 * 86400, "12d00h"),
    ],
)
def test_human_duration(seconds: float | None, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    ("done", "total", "text"),
    [
        (0, 10, "0.0%"),
        (1, 3, "33.3%"),
        (2, 3, "66.7%"),
        (10, 10, "100.0%"),
        (999, 1000, "99.9%"),
        (0, 0, "100.0%"),
    ],
)
def test_percent(done: int, total: int, text: str) -> None:
    assert percent(done, total) == text


def test_human_bytes_and_rate() -> None:
    assert human_bytes(0) == "0 bytes"
    assert human_bytes(1500) == "1.5 kB"
    assert human_bytes(2_000_000.7) == "2.0 MB"
    assert human_rate(1_500_000) == "1.5 MB/s"


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 segments"), (1, "1 segment"), (2, "2 segments"), (12345, "12,345 segments")],
)
def test_counted(count: int, text: str) -> None:
    assert counted(count, "segment") == text
