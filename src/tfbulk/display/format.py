"""Human-readable numbers, shared by every view so they all speak the same units."""

from __future__ import annotations

from rich.filesize import decimal


def human_bytes(count: float) -> str:
    return decimal(int(count))


def human_rate(bytes_per_second: float) -> str:
    return f"{decimal(int(bytes_per_second))}/s"


def human_duration(seconds: float | None) -> str:
    """`45s`, `2m13s`, `1h02m`, `3d04h`; `-` when unknown."""
    if seconds is None:
        return "-"
    whole = max(0, round(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def counted(count: int, noun: str) -> str:
    """`1 segment`, `2 segments`, `1,204 courses`: no "(s)" in front of an operator."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def percent(done: int, total: int) -> str:
    return f"{100 * done / total:.1f}%" if total else "100.0%"
